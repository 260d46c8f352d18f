/* fuzz_open.c - the sanitizer fuzz target for the core's header, record and table parsers,
 * and a C smoke test of the whole API.  Built by tests/fuzz/test_sanitizers.py with
 * -fsanitize=address,undefined straight from the native sources (no Python in the process).
 *
 *   fuzz_open fuzz WORKDIR SECONDS [MAX_ITERATIONS [SEED]]
 *       builds three valid stores through the C API, then until the time or the count runs
 *       out: copies one, mutates it (bit flips, interesting values at aligned offsets in the
 *       header, the table and the records, truncation, extension, zeroed or spliced ranges,
 *       "rebooted" marks that send the opener through the recovery scan), and runs salvage,
 *       open "r", and open "w"/"c" with get, contains, iteration, check, writes, and
 *       sometimes clear and compact.  Before each run the input is written to
 *       WORKDIR/current-input.mmkv: if the process dies, that file is the reproducer.
 *       Prints "iterations N" at the end.
 *   fuzz_open replay WORKDIR FILE...
 *       the same exercise on each given file (a corpus, or a saved reproducer).
 *   fuzz_open smoke WORKDIR
 *       put/get/delete/pop/incr/cas/setdefault/popitem/clear/compact/iterate against a model,
 *       through table rebuilds, with mmkv_check after each phase.
 *
 * A value returned by get must be one written for that key (the core checks the record's
 * CRC32C before returning it): anything else aborts with "DATA VIOLATION".  Every file the
 * fuzzer writes is small (at most a few MiB); it never makes sparse or huge files.
 */
#define _GNU_SOURCE
#include "format.h"
#include "mmkv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HDR_WORDS_OFF 128u
#define HDR_END ((uint32_t)sizeof(struct fmt_header))
#define MAX_EXTEND (1u << 20)
#define NKEYS 400
#define MAXVALS 4

/* ---- small helpers ---- */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_open: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void write_file(const char *path, const uint8_t *data, size_t len)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        die("open %s: %s", path, strerror(errno));
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n <= 0)
            die("write %s: %s", path, strerror(errno));
        done += (size_t)n;
    }
    close(fd);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die("read %s: %s", path, strerror(errno));
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        die("out of memory");
    size_t done = 0;
    while (done < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
        if (n <= 0)
            die("read %s: %s", path, strerror(errno));
        done += (size_t)n;
    }
    close(fd);
    *len = done;
    return buf;
}

/* Remove everything in dir whose name starts with prefix (leftovers of compaction, "n"). */
static void clean_prefix(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
}

/* ---- the key history: every value ever written for every key ---- */

struct hist {
    char key[700];
    size_t klen;
    char *vals[MAXVALS];
    size_t vlens[MAXVALS];
    int nvals;
};

static struct hist hist[NKEYS + 8];
static int nhist;

static struct hist *hist_find(const char *key, size_t klen)
{
    for (int i = 0; i < nhist; i++)
        if (hist[i].klen == klen && memcmp(hist[i].key, key, klen) == 0)
            return &hist[i];
    return NULL;
}

static void hist_add(const char *key, size_t klen, const char *val, size_t vlen)
{
    struct hist *h = hist_find(key, klen);
    if (!h) {
        if (nhist >= NKEYS + 8 || klen > sizeof(h->key))
            die("history full");
        h = &hist[nhist++];
        memcpy(h->key, key, klen);
        h->klen = klen;
    }
    for (int i = 0; i < h->nvals; i++)
        if (h->vlens[i] == vlen && memcmp(h->vals[i], val, vlen) == 0)
            return;
    if (h->nvals >= MAXVALS)
        die("too many values for one key");
    h->vals[h->nvals] = malloc(vlen + 1);
    memcpy(h->vals[h->nvals], val, vlen);
    h->vlens[h->nvals++] = vlen;
}

static int hist_value_ok(const char *key, size_t klen, const char *val, size_t vlen)
{
    struct hist *h = hist_find(key, klen);
    if (!h)
        return 0;
    for (int i = 0; i < h->nvals; i++)
        if (h->vlens[i] == vlen && memcmp(h->vals[i], val, vlen) == 0)
            return 1;
    return 0;
}

static void hist_free(void)
{
    for (int i = 0; i < nhist; i++)
        for (int j = 0; j < hist[i].nvals; j++)
            free(hist[i].vals[j]);
    nhist = 0;
}

/* ---- building the base stores ---- */

static void must(int rc, const char *what)
{
    if (rc < 0)
        die("%s: %s (%d)", what, mmkv_strerror(rc), rc);
}

static void base_put(mmkv_store *s, const char *key, size_t klen, const char *val, size_t vlen)
{
    must(mmkv_put(s, key, klen, val, vlen), "put");
    hist_add(key, klen, val, vlen);
}

static size_t make_value(char *out, int i, int version)
{
    size_t n = (size_t)sprintf(out, "value-%d-%d", i, version);
    for (int r = 0; r < i % 9; r++)
        n += (size_t)sprintf(out + n, "-repeat-%d", r);
    return n;
}

/* A set_many over new and existing keys and a delete_many, so bases hold batch records and
 * their plans for the mutator to damage. */
static void base_batches(mmkv_store *s)
{
    char data[2048], val[64];
    uint32_t klens[24], vlens[24];
    size_t used = 0;
    for (int i = 0; i < 24; i++) {
        int k = sprintf(data + used, "batch-%02d", i % 20);   /* four keys given twice */
        int v = sprintf(val, "batch-value-%d", i);
        memcpy(data + used + k, val, (size_t)v);
        hist_add(data + used, (size_t)k, val, (size_t)v);
        klens[i] = (uint32_t)k;
        vlens[i] = (uint32_t)v;
        used += (size_t)(k + v);
    }
    must(mmkv_set_many(s, data, klens, vlens, 24), "set_many");
    used = 0;
    for (int i = 0; i < 6; i++) {
        klens[i] = (uint32_t)sprintf(data + used, "batch-%02d", i * 3);
        used += klens[i];
    }
    if (mmkv_delete_many(s, data, klens, 6) != 6)
        die("delete_many");
}

static void build_base(const char *path, int kind)
{
    struct mmkv_options opt = {.initial_capacity = 16, .no_auto_compact = 1};
    mmkv_store *s;
    must(mmkv_open(path, MMKV_OPEN_NEW, 0644, &opt, &s), "open base");
    char key[64], val[256];
    for (int i = 0; i < 160; i++) {
        size_t k = (size_t)sprintf(key, "key-%03d", i);
        base_put(s, key, k, val, make_value(val, i, 0));
    }
    for (int i = 0; i < 160; i += 3) {
        size_t k = (size_t)sprintf(key, "key-%03d", i);
        base_put(s, key, k, val, make_value(val, i, 1));
    }
    for (int i = 0; i < 160; i += 5) {
        size_t k = (size_t)sprintf(key, "key-%03d", i);
        must(mmkv_delete(s, key, k), "delete");
    }
    base_put(s, "", 0, "the empty key", 13);
    base_put(s, "\0\xff binary", 9, "", 0);
    static char longkey[600], big[20000];
    memset(longkey, 'L', sizeof(longkey));
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 7);
    base_put(s, longkey, sizeof(longkey), "long key", 8);
    base_put(s, "big", 3, big, sizeof(big));
    base_batches(s);
    if (kind == 1) {
        must(mmkv_compact(s), "compact");
        for (int i = 0; i < 20; i++) {
            size_t k = (size_t)sprintf(key, "key-%03d", i);
            base_put(s, key, k, val, make_value(val, i, 3));
        }
    } else if (kind == 2) {
        must(mmkv_clear(s), "clear");
        for (int i = 0; i < 40; i++) {
            size_t k = (size_t)sprintf(key, "after-clear-%d", i);
            base_put(s, key, k, val, make_value(val, i, 2));
        }
    }
    must(mmkv_close(s), "close");
    mmkv_free(s);
}

/* ---- the layout of a base, for aimed mutations ---- */

struct base {
    uint8_t *data;
    size_t len;
    uint64_t table_off, slots_off, cap, tail;
    uint64_t recs[2048];         /* record offsets */
    int nrecs;
};

static struct base bases[3];
static int input_forged;         /* this input carries forged (re-checksummed) records */

static uint64_t get64(const uint8_t *p, size_t off)
{
    uint64_t v;
    memcpy(&v, p + off, 8);
    return v;
}

static void put64(uint8_t *p, size_t off, uint64_t v) { memcpy(p + off, &v, 8); }
static void put32(uint8_t *p, size_t off, uint32_t v) { memcpy(p + off, &v, 4); }

static void base_layout(struct base *b)
{
    uint64_t desc = get64(b->data, offsetof(struct fmt_header, table_desc));
    b->table_off = fmt_desc_off(desc);
    b->slots_off = b->table_off + FMT_TABLE_SLOTS_OFF;
    b->cap = 1ull << fmt_desc_lg(desc);
    b->tail = get64(b->data, offsetof(struct fmt_header, tail));
    b->nrecs = 0;
    for (uint64_t off = FMT_ARENA_OFF; off < b->tail && b->nrecs < 2048;) {
        struct fmt_record r;
        memcpy(&r, b->data + off, sizeof(r));
        b->recs[b->nrecs++] = off;
        off += (r.type == FMT_PUT || r.type == FMT_DEL) ? fmt_record_len(r.klen, r.vlen)
                                                        : fmt_align8(40 + (uint64_t)r.vlen);
    }
}

/* ---- mutation ---- */

static uint64_t interesting64(const struct base *b, size_t len)
{
    static const uint64_t fixed[] = {0, 1, 7, 8, 0xFF, 4095, 4096, 8191, 8192, 8193,
                                     0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1ull << 32,
                                     1ull << 40, 1ull << 47, 1ull << 63, UINT64_MAX,
                                     UINT64_MAX - 7, UINT64_MAX - 4095,
                                     (UINT64_MAX - 4095) | 10, (UINT64_MAX - 8191) | 12,
                                     (UINT64_MAX - (1ull << 31) + 1) | 28};
    switch (below(4)) {
    case 0: return fixed[below(sizeof(fixed) / sizeof(fixed[0]))];
    case 1: {
        uint64_t near[] = {len, len - 8, len + 8, len + 4096, b->tail, b->tail - 8, b->tail + 8,
                           b->table_off, b->slots_off, b->recs[below((uint64_t)b->nrecs)]};
        return near[below(sizeof(near) / sizeof(near[0]))];
    }
    case 2: {                    /* a slot word aimed at some record, with some tag */
        uint64_t off = below(3) ? b->recs[below((uint64_t)b->nrecs)] : below(len + 65536) & ~7ull;
        return ((off >> 3) << 20) | below(1u << 20);
    }
    default: return rnd();
    }
}

static uint32_t interesting32(void)
{
    static const uint32_t fixed[] = {0, 1, 8, 40, 255, 4096, 65535, 65536, 0x7FFFFFFF,
                                     0x80000000, 0xFFFFFFFF, 16u << 20, (16u << 20) + 1,
                                     1u << 30, (1u << 30) + 1};
    return below(3) ? fixed[below(sizeof(fixed) / sizeof(fixed[0]))] : (uint32_t)rnd();
}

/* An aligned offset in a region the parsers care about. */
static size_t pick_offset(const struct base *b, size_t len, unsigned align)
{
    size_t off;
    switch (below(5)) {
    case 0: off = HDR_WORDS_OFF + below(HDR_END - HDR_WORDS_OFF); break;
    case 1: off = b->slots_off + below(b->cap * 8); break;
    case 2: off = b->recs[below((uint64_t)b->nrecs)] + below(40); break;
    case 3: off = below(HDR_END); break;
    default: off = below(len); break;
    }
    off &= ~(size_t)(align - 1);
    return off + align <= len ? off : (len >= align ? len - align : 0);
}

static size_t mutate(const struct base *b, uint8_t *buf, size_t len)
{
    input_forged = 0;
    int n = 1 + (int)below(below(8) ? 4 : 24);
    for (int i = 0; i < n; i++) {
        switch (below(14)) {
        case 0: case 1: {                                     /* bit flips */
            size_t off = pick_offset(b, len, 1);
            if (off < len)
                buf[off] ^= (uint8_t)(1u << below(8));
            break;
        }
        case 2: case 3: case 4: {                             /* interesting u64 */
            size_t off = pick_offset(b, len, 8);
            if (off + 8 <= len)
                put64(buf, off, interesting64(b, len));
            break;
        }
        case 5: {                                             /* record length fields */
            uint64_t r = b->recs[below((uint64_t)b->nrecs)];
            size_t off = r + 8 + 4 * below(2);
            if (off + 4 <= len)
                put32(buf, off, interesting32());
            break;
        }
        case 6: {                                             /* truncation */
            size_t cut = below(3) ? below(len + 1) : (size_t)below(len / FMT_PAGE + 1) * FMT_PAGE;
            if (cut < len)
                len = cut;
            break;
        }
        case 7: {                                             /* extension */
            size_t add = below(3) ? below(9000) : below(MAX_EXTEND);
            if (len + add > b->len + MAX_EXTEND)
                add = b->len + MAX_EXTEND - len;
            if (below(2))
                memset(buf + len, 0, add);
            else
                for (size_t k = 0; k < add; k++)
                    buf[len + k] = (uint8_t)rnd();
            len += add;
            break;
        }
        case 8: {                                             /* zeroed range */
            size_t off = pick_offset(b, len, 1), n2 = below(below(2) ? 64 : 9000);
            if (off < len)
                memset(buf + off, 0, off + n2 > len ? len - off : n2);
            break;
        }
        case 9: {                                             /* splice */
            size_t from = below(len), to = below(len), n2 = below(4096);
            if (from + n2 <= len && to + n2 <= len)
                memmove(buf + to, buf + from, n2);
            break;
        }
        case 10: {                                            /* a reboot: recovery scan */
            if (len >= HDR_END) {
                put64(buf, offsetof(struct fmt_header, dirty), 1);
                for (int k = 0; k < 16; k++)
                    buf[offsetof(struct fmt_header, boot_id) + k] = (uint8_t)rnd();
            }
            break;
        }
        case 11: {                            /* a forged record: one field, CRC fixed */
            uint64_t off = b->recs[below((uint64_t)b->nrecs)];
            if (off + sizeof(struct fmt_record) > len)
                break;
            struct fmt_record *r = (struct fmt_record *)(buf + off);
            switch (below(6)) {
            case 0: r->type = (uint8_t)(below(2) ? 1 + below(5) : rnd()); break;
            case 1: r->klen = interesting32(); break;
            case 2: r->vlen = interesting32(); break;
            case 3: r->seq = below(2) ? r->seq + below(3) - 1 : rnd(); break;
            case 4: r->epoch = (uint32_t)(below(2) ? r->epoch + 1 : rnd()); break;
            default: r->hash = rnd(); break;
            }
            int data = r->type == FMT_PUT || r->type == FMT_DEL;
            uint64_t body = data ? (uint64_t)r->klen + r->vlen : 0;
            if (off + sizeof(*r) + body <= len) {
                r->crc = fmt_record_crc(r);
                input_forged = 1;     /* checksummed data that was never written: allowed */
            }
            break;
        }
        case 12: {                            /* a forged header: limits or key, CRC fixed */
            if (len < HDR_WORDS_OFF)
                break;
            struct fmt_header *h = (struct fmt_header *)buf;
            switch (below(4)) {
            case 0: h->max_key_len = interesting32(); break;
            case 1: h->max_value_len = below(2) ? interesting32() : interesting64(b, len); break;
            case 2: h->sipkey[below(16)] ^= (uint8_t)(1u << below(8)); break;
            default: h->flags = (uint32_t)rnd(); break;
            }
            h->hdr_crc = fmt_header_crc(h);
            break;
        }
        default: {                                            /* a pending intent */
            if (len >= HDR_END) {
                put64(buf, offsetof(struct fmt_header, intent), 1 + below(3));
                size_t f = offsetof(struct fmt_header, i_reserve_off) + 8 * below(10);
                put64(buf, f, interesting64(b, len));
            }
            break;
        }
        }
    }
    /* file_size must not claim more than the file: else it is only ECORRUPT at open */
    if (len >= HDR_END && below(2)) {
        uint64_t fs = get64(buf, offsetof(struct fmt_header, file_size));
        if (fs > len)
            put64(buf, offsetof(struct fmt_header, file_size), len & ~(uint64_t)(FMT_PAGE - 1));
    }
    return len;
}

/* ---- the exercise ---- */

static char *vbuf;
static size_t vcap = 1 << 16;
static int check_data = 1;       /* 0 when replaying files of unknown history */
#define CHECK_DATA (check_data && !input_forged)
static uint64_t stat_opened, stat_errors;

static void data_violation(const char *what, const char *key, size_t klen, size_t vlen)
{
    fprintf(stderr, "DATA VIOLATION: %s: key of %zu bytes (%.*s) gave a value of %zu bytes "
            "never written for it\n", what, klen, (int)(klen > 40 ? 40 : klen), key, vlen);
    abort();
}

static void get_all(mmkv_store *s)
{
    for (int i = 0; i < nhist; i++) {
        int64_t n = mmkv_get(s, hist[i].key, hist[i].klen, vbuf, vcap);
        if (n > (int64_t)vcap && n <= (64 << 20)) {
            char *big = malloc((size_t)n);
            int64_t m = big ? mmkv_get(s, hist[i].key, hist[i].klen, big, (size_t)n) : -1;
            if (CHECK_DATA && m >= 0 && m <= n &&
                !hist_value_ok(hist[i].key, hist[i].klen, big, (size_t)m))
                data_violation("get (large)", hist[i].key, hist[i].klen, (size_t)m);
            free(big);
        } else if (CHECK_DATA && n >= 0 && n <= (int64_t)vcap &&
                   !hist_value_ok(hist[i].key, hist[i].klen, vbuf, (size_t)n)) {
            data_violation("get", hist[i].key, hist[i].klen, (size_t)n);
        }
        mmkv_contains(s, hist[i].key, hist[i].klen);
    }
    mmkv_get(s, "absent", 6, vbuf, vcap);
    mmkv_contains(s, "absent", 6);
}

static void iterate(mmkv_store *s)
{
    mmkv_iter *it;
    uint64_t desc, pos = 0, current;
    if (mmkv_iter_begin(s, &it, &desc) < 0)
        return;
    size_t cap = 1 << 16, n, need;
    char *buf = malloc(cap);
    uint32_t lens[256];
#ifdef HAVE_SCAN_ITEMS
    uint32_t vlens[256];
    int items = (int)below(2);
#endif
    for (int loops = 0; loops < 100000; loops++) {
        int rc;
#ifdef HAVE_SCAN_ITEMS
        if (items)
            rc = mmkv_iter_scan_items(it, desc, &pos, 0, buf, cap, lens, vlens, 256, &n,
                                      &current, &need);
        else
#endif
            rc = mmkv_iter_scan(it, desc, &pos, 0, buf, cap, lens, 256, &n, &current, &need);
        if (rc == MMKV_EBUFSIZE) {
            if (need <= cap || need > (64u << 20))
                break;
            cap = need;
            char *nb = realloc(buf, cap);
            if (!nb)
                break;
            buf = nb;
            continue;
        }
        if (rc < 0 || rc == 1)
            break;
        if (current == 0) {
            if (mmkv_iter_repin(it, &desc) < 0)
                break;
            pos = 0;
        } else if (current != desc) {
            desc = current;
            pos = 0;
        }
    }
    free(buf);
    mmkv_iter_end(it);
}

/* get_many of every key in the history: each value one written for its key. */
static void get_many_all(mmkv_store *s)
{
    static char keys[NKEYS * 700];
    static uint32_t klens[NKEYS + 8];
    static int64_t vlens[NKEYS + 8];
    size_t used = 0, need = 0;
    for (int i = 0; i < nhist; i++) {
        memcpy(keys + used, hist[i].key, hist[i].klen);
        klens[i] = (uint32_t)hist[i].klen;
        used += hist[i].klen;
    }
    if (mmkv_get_many(s, keys, klens, (size_t)nhist, vbuf, vcap, vlens, &need) != 0)
        return;
    size_t at = 0;
    for (int i = 0; i < nhist; i++) {
        if (vlens[i] < 0)
            continue;
        if (vlens[i] > (int64_t)(vcap - at))
            data_violation("get_many (length)", hist[i].key, hist[i].klen, (size_t)vlens[i]);
        if (CHECK_DATA && !hist_value_ok(hist[i].key, hist[i].klen, vbuf + at, (size_t)vlens[i]))
            data_violation("get_many", hist[i].key, hist[i].klen, (size_t)vlens[i]);
        at += (size_t)vlens[i];
    }
}

/* The log walk watch() and range() use, from the start, through clears and compactions:
 * every item's key and value must lie inside the buffer. */
static void log_walk(mmkv_store *s)
{
    mmkv_log *lg;
    struct mmkv_log_pos pos;
    struct mmkv_log_item items[64];
    uint64_t off = 0, sub = 0;
    size_t n, need;
    if (mmkv_log_open(s, &lg, &pos) < 0)
        return;
    mmkv_log_find(lg, below(3) ? 0 : pos.seq / 2, &off);
    for (int rounds = 0; rounds < 10000; rounds++) {
        int rc = mmkv_log_read(lg, &off, &sub, (int)below(2), vbuf, vcap, items, 64, &n, &need, &pos);
        if (rc < 0)
            break;
        for (size_t i = 0; i < n; i++)
            if (items[i].data_off > vcap || items[i].klen + items[i].vlen > vcap - items[i].data_off)
                data_violation("log_read (bounds)", "", 0, items[i].vlen);
        if (n == 0 && off >= pos.end) {
            int lagged;
            if (!pos.retired || mmkv_log_repin(lg, &pos, &lagged) < 0)
                break;
            off = pos.base_off;
            sub = 0;
        }
    }
    mmkv_log_wait(lg, off, 1000);
    mmkv_log_seq(s);
    mmkv_log_close(lg);
}

static void reads(mmkv_store *s)
{
    get_many_all(s);
    log_walk(s);
    struct mmkv_stats st;
    struct mmkv_check_report rep;
    char report[2048];
    mmkv_count(s);
    mmkv_stats(s, &st);
    get_all(s);
    iterate(s);
    mmkv_check(s, report, sizeof(report), &rep);
}

static void writes(mmkv_store *s, int heavy)
{
    int64_t r;
    size_t klen;
    char small[64];
    /* everything written here joins the history: later reads may return it */
    if (!hist_find("__probe__", 9)) {
        hist_add("__probe__", 9, "probe value", 11);
        hist_add("__probe__", 9, "swapped", 7);
        hist_add(hist[1].key, hist[1].klen, "overwritten", 11);
        hist_add("__default__", 11, "D", 1);
        hist_add("__counter__", 11, "5", 1);
        hist_add("__locked__", 10, "L", 1);
        for (int i = 0; i < 40; i++) {
            int k = sprintf(small, "fuzz-insert-%d", i);
            hist_add(small, (size_t)k, small, (size_t)k);
        }
    }
    mmkv_put(s, "__probe__", 9, "probe value", 11);
    if (nhist > 2) {
        mmkv_put(s, hist[1].key, hist[1].klen, "overwritten", 11);
        mmkv_delete(s, hist[2].key, hist[2].klen);
        mmkv_pop(s, hist[0].key, hist[0].klen, vbuf, vcap);
    }
    mmkv_setdefault(s, "__default__", 11, "D", 1, small, sizeof(small));
    mmkv_incr(s, "__counter__", 11, 5, &r);
    mmkv_cas(s, "__probe__", 9, 0, "probe value", 11, 0, "swapped", 7);
    mmkv_cas(s, "__absent__", 10, 1, NULL, 0, 1, NULL, 0);
    mmkv_popitem(s, vbuf, vcap, &klen);
    {
        uint32_t kl[2] = {9, 11}, vl[2] = {7, 1};
        mmkv_set_many(s, "__probe__swapped__default__D", kl, vl, 2);
        mmkv_delete_many(s, "__absent____probe__", (uint32_t[]){10, 9}, 2);
    }
    for (int i = 0; i < (heavy ? 40 : 3); i++) {   /* enough inserts for a table rebuild */
        int k = sprintf(small, "fuzz-insert-%d", i);
        mmkv_put(s, small, (size_t)k, small, (size_t)k);
    }
    if (mmkv_lock(s) == 0) {
        mmkv_put(s, "__locked__", 10, "L", 1);
        mmkv_unlock(s);
    }
    mmkv_sync(s);
    if (heavy && below(2))
        mmkv_compact(s);
    if (heavy && !below(4))
        mmkv_clear(s);
}

static void salvage(const char *path)
{
    mmkv_salvage *h;
    if (mmkv_salvage_open(path, &h) < 0)
        return;
    struct mmkv_salvage_item items[64];
    size_t cap = 1 << 16, n, need;
    char *buf = malloc(cap);
    for (int loops = 0; loops < 100000; loops++) {
        int rc = mmkv_salvage_next(h, buf, cap, items, 64, &n, &need);
        if (rc == MMKV_EBUFSIZE) {
            if (need <= cap || need > (64u << 20))
                break;
            cap = need;
            char *nb = realloc(buf, cap);
            if (!nb)
                break;
            buf = nb;
            continue;
        }
        if (rc < 0)
            break;
        for (size_t i = 0; i < n; i++) {
            if (items[i].data_off + items[i].klen + items[i].vlen > cap)
                die("salvage item outside the buffer");
            if (CHECK_DATA && items[i].type == FMT_PUT &&
                !hist_value_ok(buf + items[i].data_off, items[i].klen,
                               buf + items[i].data_off + items[i].klen, items[i].vlen))
                data_violation("salvage", buf + items[i].data_off, items[i].klen, items[i].vlen);
        }
        if (rc == 1)
            break;
    }
    uint64_t valid, skipped;
    mmkv_salvage_counts(h, &valid, &skipped);
    free(buf);
    mmkv_salvage_close(h);
}

static void exercise_open(const char *path, int flag, int heavy)
{
    mmkv_store *s;
    int rc = mmkv_open(path, flag, 0644, NULL, &s);
    if (rc < 0) {
        stat_errors++;
        return;
    }
    stat_opened++;
    reads(s);
    if (flag != MMKV_OPEN_READ) {
        writes(s, heavy);
        reads(s);
    } else if (mmkv_put(s, "x", 1, "y", 1) >= 0) {     /* ERDONLY, or ETOOBIG under forged limits */
        die("a write on a read-only handle succeeded");
    }
    mmkv_close(s);
    mmkv_free(s);
}

/* One input: salvage, "r", then "w" or "c" on a fresh copy, then "r" again. */
static void exercise(const char *dir, const uint8_t *data, size_t len, int heavy)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/cur.mmkv", dir);
    clean_prefix(dir, "cur.mmkv");
    write_file(path, data, len);
    salvage(path);
    exercise_open(path, MMKV_OPEN_READ, 0);
    write_file(path, data, len);
    exercise_open(path, below(2) ? MMKV_OPEN_WRITE : MMKV_OPEN_CREATE, heavy);
    exercise_open(path, MMKV_OPEN_READ, 0);
}

/* ---- modes ---- */

static void build_bases(const char *dir)
{
    char path[PATH_MAX];
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof(path), "%s/base-%d.mmkv", dir, k);
        build_base(path, k);
        bases[k].data = read_file(path, &bases[k].len);
        base_layout(&bases[k]);
        unlink(path);
    }
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "fuzz_open: one input ran for over 20 s (a hang): see "
                              "current-input.mmkv\n";
    write(2, msg, sizeof(msg) - 1);
    _exit(3);
}

static int mode_fuzz(const char *dir, double seconds, uint64_t max_iter, uint64_t seed)
{
    rng_state ^= seed * 0x9E3779B97F4A7C15ull + 1;
    build_bases(dir);
    size_t maxlen = 0;
    for (int k = 0; k < 3; k++)
        if (bases[k].len > maxlen)
            maxlen = bases[k].len;
    uint8_t *buf = malloc(maxlen + MAX_EXTEND + 16);
    char input[PATH_MAX];
    snprintf(input, sizeof(input), "%s/current-input.mmkv", dir);
    signal(SIGALRM, on_alarm);
    double start = now_s();
    uint64_t it = 0;
    for (; it < max_iter && now_s() - start < seconds; it++) {
        const struct base *b = &bases[below(3)];
        memcpy(buf, b->data, b->len);
        size_t len = mutate(b, buf, b->len);
        write_file(input, buf, len);          /* the reproducer if this one kills us */
        alarm(20);
        exercise(dir, buf, len, !below(8));
        alarm(0);
        if (it % 100 == 99)
            printf("progress %llu\n", (unsigned long long)it + 1);
    }
    unlink(input);
    clean_prefix(dir, "cur.mmkv");
    printf("iterations %llu opened %llu refused %llu seconds %.1f\n", (unsigned long long)it,
           (unsigned long long)stat_opened, (unsigned long long)stat_errors, now_s() - start);
    free(buf);
    for (int k = 0; k < 3; k++)
        free(bases[k].data);
    return 0;
}

static int mode_replay(const char *dir, int argc, char **argv)
{
    build_bases(dir);          /* the same keys to look up; their values are not checked */
    check_data = 0;
    for (int i = 0; i < argc; i++) {
        size_t len;
        uint8_t *data = read_file(argv[i], &len);
        alarm(20);
        signal(SIGALRM, on_alarm);
        exercise(dir, data, len, 1);
        alarm(0);
        free(data);
        printf("replayed %s\n", argv[i]);
    }
    clean_prefix(dir, "cur.mmkv");
    for (int k = 0; k < 3; k++)
        free(bases[k].data);
    return 0;
}

/* ---- smoke: the API against a model ---- */

#define SMOKE_KEYS 3000

static char *model[SMOKE_KEYS];
static size_t model_len[SMOKE_KEYS];

static void smoke_fail(const char *what, int i)
{
    die("smoke: %s (key %d)", what, i);
}

static size_t smoke_key(char *out, int i) { return (size_t)sprintf(out, "smoke-key-%d", i); }

static void smoke_verify(mmkv_store *s)
{
    char key[64];
    int64_t live = 0;
    for (int i = 0; i < SMOKE_KEYS; i++) {
        size_t k = smoke_key(key, i);
        int64_t n = mmkv_get(s, key, k, vbuf, vcap);
        if (model[i]) {
            live++;
            if (n != (int64_t)model_len[i] || memcmp(vbuf, model[i], model_len[i]) != 0)
                smoke_fail("get differs from the model", i);
        } else if (n != MMKV_ENOTFOUND) {
            smoke_fail("a deleted key is present", i);
        }
    }
    if (mmkv_count(s) != live)
        smoke_fail("count differs from the model", (int)live);
    /* iteration: every live key exactly once */
    static unsigned char seen[SMOKE_KEYS];
    memset(seen, 0, sizeof(seen));
    mmkv_iter *it;
    uint64_t desc, pos = 0, current;
    must(mmkv_iter_begin(s, &it, &desc), "iter_begin");
    char buf[1 << 14];
    uint32_t lens[128];
    size_t n, need;
    int64_t got = 0;
    for (;;) {
        int rc = mmkv_iter_scan(it, desc, &pos, 0, buf, sizeof(buf), lens, 128, &n, &current,
                                &need);
        must(rc, "iter_scan");
        size_t off = 0;
        for (size_t j = 0; j < n; j++) {
            int idx;
            char kb[64];
            if (lens[j] >= sizeof(kb))
                smoke_fail("iteration yielded a long key", (int)j);
            memcpy(kb, buf + off, lens[j]);
            kb[lens[j]] = 0;
            if (sscanf(kb, "smoke-key-%d", &idx) != 1 || idx < 0 || idx >= SMOKE_KEYS ||
                !model[idx] || seen[idx]++)
                smoke_fail("iteration yielded a wrong or repeated key", (int)j);
            off += lens[j];
            got++;
        }
        if (rc == 1)
            break;
    }
    mmkv_iter_end(it);
    if (got != live)
        smoke_fail("iteration missed keys", (int)got);
    char report[4096];
    struct mmkv_check_report rep;
    if (mmkv_check(s, report, sizeof(report), &rep) != 0)
        die("smoke: check failed:\n%s", report);
}

static void model_set(int i, const char *v, size_t n)
{
    free(model[i]);
    model[i] = malloc(n + 1);
    memcpy(model[i], v, n);
    model_len[i] = n;
}

static void model_del(int i)
{
    free(model[i]);
    model[i] = NULL;
}

static int mode_smoke(const char *dir)
{
    char path[PATH_MAX], key[64], val[4096];
    snprintf(path, sizeof(path), "%s/smoke.mmkv", dir);
    struct mmkv_options opt = {.initial_capacity = 16};
    mmkv_store *s;
    must(mmkv_open(path, MMKV_OPEN_NEW, 0644, &opt, &s), "smoke open");
    for (int round = 0; round < 30000; round++) {
        int i = (int)below(SMOKE_KEYS);
        size_t k = smoke_key(key, i);
        size_t vn = (size_t)sprintf(val, "v%d-%d", round, i);
        if (!below(50)) {                        /* a large value now and then */
            vn = below(sizeof(val));
            for (size_t j = 0; j < vn; j++)
                val[j] = (char)rnd();
        }
        switch (below(10)) {
        case 0: case 1: case 2: case 3:
            must(mmkv_put(s, key, k, val, vn), "put");
            model_set(i, val, vn);
            break;
        case 4: {
            int rc = mmkv_delete(s, key, k);
            if (rc != (model[i] ? 0 : MMKV_ENOTFOUND))
                smoke_fail("delete", i);
            model_del(i);
            break;
        }
        case 5: {
            int64_t n = mmkv_pop(s, key, k, vbuf, vcap);
            if (model[i] ? (n != (int64_t)model_len[i] || memcmp(vbuf, model[i], (size_t)n))
                         : n != MMKV_ENOTFOUND)
                smoke_fail("pop", i);
            model_del(i);
            break;
        }
        case 6: {
            int64_t n = mmkv_setdefault(s, key, k, val, vn, vbuf, vcap);
            if (!model[i])
                model_set(i, val, vn);
            if (n != (int64_t)model_len[i] || memcmp(vbuf, model[i], (size_t)n))
                smoke_fail("setdefault", i);
            break;
        }
        case 7: {
            int64_t res;
            int rc = mmkv_incr(s, key, k, 3, &res);
            if (!model[i]) {
                if (rc != 0 || res != 3)
                    smoke_fail("incr of an absent key", i);
                model_set(i, "3", 1);
            } else if (rc == 0) {
                char text[32];
                int tn = sprintf(text, "%lld", (long long)res);
                model_set(i, text, (size_t)tn);
            } else if (rc != MMKV_EVALUE) {
                smoke_fail("incr", i);
            }
            break;
        }
        case 8: {
            int absent = !model[i];
            int rc = mmkv_cas(s, key, k, absent, absent ? NULL : model[i],
                              absent ? 0 : model_len[i], 0, val, vn);
            if (rc != 1)
                smoke_fail("cas with the current value", i);
            model_set(i, val, vn);
            break;
        }
        default: {
            size_t kl;
            int64_t n = mmkv_popitem(s, vbuf, vcap, &kl);
            if (n == MMKV_ENOTFOUND)
                break;
            int idx;
            char kb[64];
            if (n < 0 || kl >= sizeof(kb))
                smoke_fail("popitem", (int)n);
            memcpy(kb, vbuf, kl);
            kb[kl] = 0;
            if (sscanf(kb, "smoke-key-%d", &idx) != 1 || idx < 0 || idx >= SMOKE_KEYS ||
                !model[idx] || model_len[idx] != (size_t)n - kl ||
                memcmp(model[idx], vbuf + kl, model_len[idx]))
                smoke_fail("popitem gave a wrong item", idx);
            model_del(idx);
            break;
        }
        }
        if (round % 5000 == 4999) {
            smoke_verify(s);
            if (round == 14999)
                must(mmkv_compact(s), "compact");
            if (round == 19999) {
                must(mmkv_close(s), "close");
                mmkv_free(s);
                must(mmkv_open(path, MMKV_OPEN_WRITE, 0644, NULL, &s), "reopen");
            }
            smoke_verify(s);
        }
    }
    must(mmkv_clear(s), "clear");
    for (int i = 0; i < SMOKE_KEYS; i++)
        model_del(i);
    smoke_verify(s);
    must(mmkv_close(s), "close");
    if (mmkv_close(s) != 0)
        die("smoke: closing twice");
    if (mmkv_put(s, "k", 1, "v", 1) != MMKV_ECLOSED)
        die("smoke: a write on a closed handle");
    mmkv_free(s);
    unlink(path);
    printf("smoke ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        die("usage: fuzz_open fuzz DIR SECONDS [MAX [SEED]] | replay DIR FILE... | smoke DIR");
    vbuf = malloc(vcap);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc;
    if (strcmp(argv[1], "fuzz") == 0 && argc >= 4) {
        uint64_t max = argc > 4 ? strtoull(argv[4], NULL, 0) : UINT64_MAX;
        uint64_t seed = argc > 5 ? strtoull(argv[5], NULL, 0) : (uint64_t)time(NULL);
        printf("seed %llu\n", (unsigned long long)seed);
        rc = mode_fuzz(argv[2], atof(argv[3]), max, seed);
    } else if (strcmp(argv[1], "replay") == 0) {
        rc = mode_replay(argv[2], argc - 3, argv + 3);
    } else if (strcmp(argv[1], "smoke") == 0) {
        rc = mode_smoke(argv[2]);
    } else {
        die("unknown mode %s", argv[1]);
    }
    hist_free();
    free(vbuf);
    return rc;
}
