/* log.c - reading the log from an offset: what watch() follows and what keeps range()'s
 * index fresh.  Records below header.published are immutable and carry their seq, so a
 * reader needs no lock: it walks from where it stopped, checking every header against the
 * mapping and every PUT/DEL checksum (the file is hostile), and copies what it finds.
 *
 * Files.  A reader pins one file (a gen).  When a compaction replaces it, the old file's log
 * is final: the reader finishes it, then moves to the file at the path (mmkv_log_repin).
 * The compacted file starts with a copy of the live records whose seqs end at the old
 * file's last one (base_seq); its own changes begin at base_off.  A reader that reaches a
 * file whose base_seq is not the last seq of the file it finished has lost changes that
 * an intermediate compaction dropped (`lagged`).
 *
 * Clears.  A CLEAR record names the table it emptied; that table is frozen and lists the
 * keys the clear removed, which the reader reports as deletes with the CLEAR's seq.
 *
 * Waiting.  Writers add 1 to header.wake after publishing and FUTEX_WAKE it when
 * header.watchers is nonzero; a waiter registers in `watchers`, loads `wake`, re-checks the
 * log and sleeps on `wake` (a shared futex) for at most 100 ms.  Either the writer's
 * increment comes first (the waiter then sees the new records) or the writer sees the
 * waiter registered (and wakes it).  A waiter never blocks a writer.  A handle opened "r"
 * maps the file read-only and cannot register: its sleeps end at the 100 ms slice (or when
 * a registered watcher's wake-up happens to reach the same word).
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LOG_SLICE_NS (100ull * 1000000ull)

struct mmkv_log {
    mmkv_store *s;
    struct gen *g;               /* pinned */
};

struct log_read {
    uint64_t *off, *sub;
    int values;
    char *buf;
    size_t cap, used;
    struct mmkv_log_item *items;
    size_t max, n, *need;
};

static int log_enter(mmkv_store *s)
{
    atomic_fetch_add(&s->inflight, 1);
    if (atomic_load(&s->closed)) {
        atomic_fetch_sub(&s->inflight, 1);
        return MMKV_ECLOSED;
    }
    return 0;
}

static void log_leave(mmkv_store *s)
{
    atomic_fetch_sub(&s->inflight, 1);
}

/* Where the pinned file's log stands.  `retired` is decided before `end` is read, so a
 * retired file's end is its final one. */
static void log_pos(mmkv_store *s, struct gen *g, struct view *v, struct mmkv_log_pos *pos)
{
    struct fmt_header *h = view_hdr(v);
    uint64_t state = atomic_load_explicit(&h->state, memory_order_acquire);
    pos->retired = atomic_load(&s->gen) != g || store_moved(s, g, state);
    uint64_t tail = atomic_load_explicit(&h->tail, memory_order_acquire);
    uint64_t pub = atomic_load_explicit(&h->published, memory_order_acquire);
    pos->end = pub == 0 || pub > tail ? tail : pub;
    pos->seq = atomic_load(&h->seq);
    pos->epoch = atomic_load(&h->epoch);
    pos->base_seq = h->base_seq;
    pos->base_off = h->base_off >= FMT_ARENA_OFF && h->base_off <= tail ? h->base_off : FMT_ARENA_OFF;
}

/* The record at off, below end, with its header checked; NULL when damaged. */
static const struct fmt_record *log_record(mmkv_store *s, struct view *v, uint64_t off,
                                           uint64_t end, uint64_t *len)
{
    if (off < FMT_ARENA_OFF || (off & 7) || off + sizeof(struct fmt_record) > end ||
        store_extend(s, v, off + sizeof(struct fmt_record)) < 0)
        return NULL;
    const struct fmt_record *r = (const struct fmt_record *)(v->base + off);
    int keyed = r->type == FMT_PUT || r->type == FMT_DEL;
    if (r->type < FMT_PUT || r->type > FMT_CLEAR || r->klen > v->g->max_klen ||
        (!keyed && r->klen) || (r->type != FMT_TABLE && r->type != FMT_PAD && r->vlen > v->g->max_vlen))
        return NULL;
    *len = keyed ? fmt_record_len(r->klen, r->vlen) : fmt_align8(sizeof(*r) + (uint64_t)r->vlen);
    if (*len > end - off || store_extend(s, v, off + *len) < 0)
        return NULL;
    r = (const struct fmt_record *)(v->base + off);
    if (keyed && fmt_record_crc(r) != r->crc)
        return NULL;
    return r;
}

/* Append one item (key, then value when given) if it fits: 1 added, 0 full, or
 * MMKV_EBUFSIZE when it would not fit even an empty buffer. */
static int log_emit(struct log_read *c, uint64_t seq, int type, const void *key, uint32_t klen,
                    const void *val, uint64_t vlen)
{
    if (c->n >= c->max || c->used + klen + vlen > c->cap) {
        if (c->n == 0 && c->used + klen + vlen > c->cap) {
            *c->need = klen + vlen;
            return MMKV_EBUFSIZE;
        }
        return 0;
    }
    struct mmkv_log_item *it = &c->items[c->n++];
    it->seq = seq;
    it->type = (uint32_t)type;
    it->klen = klen;
    it->vlen = vlen;
    it->data_off = c->used;
    if (klen)
        memcpy(c->buf + c->used, key, klen);
    if (vlen)
        memcpy(c->buf + c->used + klen, val, vlen);
    c->used += klen + vlen;
    return 1;
}

/* The keys a CLEAR at clear_off removed, from slot *c->sub of the table it names: 1 when
 * all are out, 0 when the batch filled up first (*sub says where to resume). */
static int log_clear(mmkv_store *s, struct view *v, const struct fmt_record *r, uint64_t clear_off,
                     struct log_read *c)
{
    uint64_t desc = r->hash, seq = r->seq;
    struct table t;
    if (!fmt_desc_sane(desc) || fmt_desc_off(desc) >= clear_off || table_get(s, v, desc, &t) < 0) {
        /* a file from before clears named their table: report "everything" once */
        int rc = log_emit(c, seq, FMT_CLEAR, NULL, 0, NULL, 0);
        return rc;
    }
    for (uint64_t i = *c->sub; i < t.cap; i++) {
        uint64_t w = atomic_load_explicit(&t.slots[i], memory_order_relaxed);
        const struct fmt_record *k;
        if (w <= FMT_TOMB)
            continue;
        int rc = table_record(s, v, w, &k);
        if (rc < 0)
            return rc;
        if (k->type != FMT_PUT)
            return MMKV_ECORRUPT;
        rc = log_emit(c, seq, FMT_DEL, k + 1, k->klen, NULL, 0);
        if (rc <= 0) {
            *c->sub = i;
            return rc;
        }
    }
    return 1;
}

static int log_read_gen(mmkv_store *s, struct gen *g, struct log_read *c, struct mmkv_log_pos *pos)
{
    struct view v;
    store_view(g, &v);
    log_pos(s, g, &v, pos);
    uint64_t off = *c->off, len;
    int rc = 0;
    while (off < pos->end && c->n < c->max) {
        const struct fmt_record *r = log_record(s, &v, off, pos->end, &len);
        if (!r)
            return MMKV_ECORRUPT;
        if (r->type == FMT_CLEAR)
            rc = log_clear(s, &v, r, off, c);
        else if (r->type == FMT_PUT || r->type == FMT_DEL)
            rc = log_emit(c, r->seq, r->type, r + 1, r->klen, (const char *)(r + 1) + r->klen,
                          c->values && r->type == FMT_PUT ? r->vlen : 0);
        else
            rc = 1;
        if (rc <= 0)
            break;
        off += len;
        *c->sub = 0;
    }
    *c->off = off;
    return rc < 0 ? rc : 0;
}

struct log_guarded_ctx {
    mmkv_store *s;
    struct gen *g;
    int (*fn)(mmkv_store *, struct gen *, void *);
    void *arg;
};

static int64_t log_guarded_run(void *arg)
{
    struct log_guarded_ctx *c = arg;
    return c->fn(c->s, c->g, c->arg);
}

/* Run fn(s, g, arg) inside the SIGBUS guard. */
static int log_guarded(mmkv_store *s, struct gen *g,
                       int (*fn)(mmkv_store *, struct gen *, void *), void *arg)
{
    struct log_guarded_ctx c = {s, g, fn, arg};
    return (int)guard_run(log_guarded_run, &c);
}

static int log_pos_fn(mmkv_store *s, struct gen *g, void *arg)
{
    struct view v;
    store_view(g, &v);
    log_pos(s, g, &v, arg);
    return 0;
}

/* Pin the file the path names now (moving the handle first if it is behind). */
static int log_pin(mmkv_store *s, struct gen **out, struct mmkv_log_pos *pos)
{
    for (int tries = 0; tries < 100; tries++) {
        struct gen *g = store_gen_pin(s);
        if (!g)
            return MMKV_ECLOSED;
        int rc = log_guarded(s, g, log_pos_fn, pos);
        if (rc == 0 && !pos->retired) {
            *out = g;
            return 0;
        }
        if (rc == 0)
            rc = store_switch(s, g);
        store_gen_unpin(g);
        if (rc < 0)
            return rc;
    }
    return MMKV_ECORRUPT;
}

int mmkv_log_open(mmkv_store *s, mmkv_log **out, struct mmkv_log_pos *pos)
{
    *out = NULL;
    if (!s)
        return MMKV_ECLOSED;
    mmkv_log *lg = calloc(1, sizeof(*lg));
    if (!lg)
        return -ENOMEM;
    int rc = log_enter(s);
    if (rc == 0) {
        lg->s = s;
        rc = log_pin(s, &lg->g, pos);
        log_leave(s);
    }
    if (rc < 0)
        free(lg);
    else
        *out = lg;
    return rc;
}

struct log_read_arg {
    struct log_read *c;
    struct mmkv_log_pos *pos;
};

static int log_read_fn(mmkv_store *s, struct gen *g, void *arg)
{
    struct log_read_arg *a = arg;
    return log_read_gen(s, g, a->c, a->pos);
}

int mmkv_log_read(mmkv_log *lg, uint64_t *off, uint64_t *sub, int values, char *buf, size_t cap,
                  struct mmkv_log_item *items, size_t max_items, size_t *n, size_t *need,
                  struct mmkv_log_pos *pos)
{
    struct log_read c = {off, sub, values, buf, cap, 0, items, max_items, 0, need};
    struct log_read_arg a = {&c, pos};
    *n = 0;
    int rc = log_enter(lg->s);
    if (rc < 0)
        return rc;
    rc = log_guarded(lg->s, lg->g, log_read_fn, &a);
    log_leave(lg->s);
    *n = c.n;
    return rc;
}

struct log_find_arg {
    uint64_t after, *off;
};

/* The first record after seq a->after; 1 when the file no longer holds the changes that
 * follow it (a compaction dropped them). */
static int log_find_fn(mmkv_store *s, struct gen *g, void *arg)
{
    struct log_find_arg *a = arg;
    struct view v;
    struct mmkv_log_pos pos;
    store_view(g, &v);
    log_pos(s, g, &v, &pos);
    uint64_t off = pos.base_off, len;
    *a->off = off;
    if (a->after < pos.base_seq)
        return 1;
    while (off < pos.end) {
        const struct fmt_record *r = log_record(s, &v, off, pos.end, &len);
        if (!r)
            return MMKV_ECORRUPT;
        if (r->seq > a->after)
            break;
        off += len;
    }
    *a->off = off;
    return 0;
}

int mmkv_log_find(mmkv_log *lg, uint64_t after_seq, uint64_t *off)
{
    struct log_find_arg a = {after_seq, off};
    int rc = log_enter(lg->s);
    if (rc < 0)
        return rc;
    rc = log_guarded(lg->s, lg->g, log_find_fn, &a);
    log_leave(lg->s);
    return rc;
}

struct log_wait_arg {
    uint64_t off, timeout_ns;
};

static int log_wait_fn(mmkv_store *s, struct gen *g, void *arg)
{
    struct log_wait_arg *a = arg;
    struct view v;
    struct mmkv_log_pos pos;
    store_view(g, &v);
    struct fmt_header *h = view_hdr(&v);
    int registered = !g->readonly;   /* a read-only mapping cannot be written: see the top */
    if (registered)
        atomic_fetch_add(&h->watchers, 1);
    uint32_t w0 = atomic_load(&h->wake);
    log_pos(s, g, &v, &pos);
    int ready = pos.end > a->off || pos.retired;
    if (!ready)
        os_futex_wait(&h->wake, w0, a->timeout_ns < LOG_SLICE_NS ? a->timeout_ns : LOG_SLICE_NS);
    if (registered)
        atomic_fetch_sub(&h->watchers, 1);
    return ready;
}

int mmkv_log_wait(mmkv_log *lg, uint64_t off, uint64_t timeout_ns)
{
    struct log_wait_arg a = {off, timeout_ns};
    int rc = log_enter(lg->s);
    if (rc < 0)
        return rc;
    rc = log_guarded(lg->s, lg->g, log_wait_fn, &a);
    log_leave(lg->s);
    return rc;
}

int mmkv_log_repin(mmkv_log *lg, struct mmkv_log_pos *pos, int *lagged)
{
    mmkv_store *s = lg->s;
    struct mmkv_log_pos old;
    int rc = log_enter(s);
    if (rc < 0)
        return rc;
    rc = log_guarded(s, lg->g, log_pos_fn, &old);
    struct gen *g = NULL;
    if (rc == 0)
        rc = log_pin(s, &g, pos);
    if (rc == 0) {
        *lagged = g != lg->g && pos->base_seq != old.seq;
        store_gen_unpin(lg->g);
        lg->g = g;
    }
    log_leave(s);
    return rc;
}

void mmkv_log_close(mmkv_log *lg)
{
    if (!lg)
        return;
    store_gen_unpin(lg->g);
    free(lg);
}

static int64_t op_seq(mmkv_store *s, struct view *v, void *arg)
{
    (void)s;
    (void)arg;
    return (int64_t)(atomic_load_explicit(&view_hdr(v)->seq, memory_order_acquire) & INT64_MAX);
}

int64_t mmkv_log_seq(mmkv_store *s)
{
    return call_read(s, op_seq, NULL);
}

/* ---- which file: the ordered index is shared by the handles of a process on one file ---- */

static int64_t op_file_id(mmkv_store *s, struct view *v, void *arg)
{
    (void)s;
    (void)arg;
    return (int64_t)(uintptr_t)v->g;
}

int64_t mmkv_log_file_id(mmkv_store *s)
{
    return call_read(s, op_file_id, NULL);
}

int64_t mmkv_log_pinned_id(const mmkv_log *lg)
{
    return lg ? (int64_t)(uintptr_t)lg->g : 0;
}
