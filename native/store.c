/* store.c - the exported mapping operations: validate arguments, enter the read or the
 * write frame (call.c), and call the table and commit layers.  Opening and closing are in
 * open.c, iteration in iter.c, the mapping and its files in map.c.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- reads ---- */

struct kv_ctx {
    const char *key;
    size_t klen;
    uint64_t hash;
    const char *val;             /* put, setdefault default, cas new value */
    size_t vlen;
    const char *expected;        /* cas */
    size_t elen;
    int flag_a, flag_b;          /* cas: expected_absent, new_delete */
    char *buf;                   /* out: value copies */
    size_t cap;
    int64_t delta;               /* incr */
    int64_t *result;
    size_t *klen_out;
    mmkv_alloc_fn alloc;         /* get: where the value goes, asked once its length is known */
    void *alloc_ctx;
};

/* A key over the store's limit: MMKV_ECLOSED first if the handle is closed (a closed
 * handle answers nothing else), else `otherwise` (ETOOBIG, or ENOTFOUND for lookups). */
static int store_check_key(mmkv_store *s, size_t klen)
{
    return klen > s->max_klen ? MMKV_ETOOBIG : 0;
}

static int store_refuse(mmkv_store *s, int otherwise)
{
    if (atomic_load(&s->closed))
        return MMKV_ECLOSED;
    return otherwise;
}

static uint64_t store_max_vlen(mmkv_store *s)
{
    return s->max_vlen;
}

static int64_t store_copy_value(const struct fmt_record *r, char *buf, size_t cap)
{
    if (r->vlen > cap)
        return r->vlen;
    memcpy(buf, (const char *)(r + 1) + r->klen, r->vlen);
    if (fmt_record_crc(r) != r->crc)
        return MMKV_ECORRUPT;
    return r->vlen;
}

static int64_t store_copy_alloc(const struct fmt_record *r, mmkv_alloc_fn alloc, void *ctx)
{
    char *dest = alloc(ctx, r->vlen);
    if (!dest)
        return -ENOMEM;
    memcpy(dest, (const char *)(r + 1) + r->klen, r->vlen);
    if (fmt_record_crc(r) != r->crc)
        return MMKV_ECORRUPT;
    return r->vlen;
}

/* A lock-free read: probe the current table, copy, and retry if the table was rebuilt in
 * the meantime (the descriptor re-check is a seqlock over one atomic word). */
static int64_t op_get(mmkv_store *s, struct view *v, void *arg)
{
    struct kv_ctx *c = arg;
    c->hash = fmt_siphash13(v->g->sipkey, c->key, c->klen);
    for (;;) {
        struct fmt_header *h = view_hdr(v);
        uint64_t d1 = atomic_load_explicit(&h->table_desc, memory_order_acquire);
        struct table t;
        struct probe p;
        int64_t rc = table_get(s, v, d1, &t);
        if (rc < 0)
            return rc;
        rc = table_probe(s, v, &t, c->hash, c->key, c->klen, 0, &p);
        if (rc < 0)
            return rc;
        if (p.found == UINT64_MAX)
            rc = MMKV_ENOTFOUND;
        else if (c->alloc)
            rc = store_copy_alloc(p.rec, c->alloc, c->alloc_ctx);
        else if (c->buf)
            rc = store_copy_value(p.rec, c->buf, c->cap);
        else
            rc = 1;
        atomic_thread_fence(memory_order_acquire);
        h = view_hdr(v);
        if (atomic_load_explicit(&h->table_desc, memory_order_relaxed) == d1)
            return rc;
    }
}

int64_t mmkv_get(mmkv_store *s, const char *key, size_t klen, char *buf, size_t cap)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0)
        return store_refuse(s, MMKV_ENOTFOUND);
    struct kv_ctx c = {.key = key, .klen = klen, .buf = buf, .cap = cap};
    return call_read(s, op_get, &c);
}

int64_t mmkv_get_alloc(mmkv_store *s, const char *key, size_t klen, mmkv_alloc_fn alloc,
                       void *ctx)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0)
        return store_refuse(s, MMKV_ENOTFOUND);
    struct kv_ctx c = {.key = key, .klen = klen, .alloc = alloc, .alloc_ctx = ctx};
    return call_read(s, op_get, &c);
}

int mmkv_contains(mmkv_store *s, const char *key, size_t klen)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0)
        return store_refuse(s, 0);
    struct kv_ctx c = {.key = key, .klen = klen, .buf = NULL};
    int64_t rc = call_read(s, op_get, &c);
    return rc == MMKV_ENOTFOUND ? 0 : (int)rc;
}

static int64_t op_count(mmkv_store *s, struct view *v, void *arg)
{
    (void)s;
    (void)arg;
    return (int64_t)atomic_load_explicit(&view_hdr(v)->count, memory_order_acquire);
}

int64_t mmkv_count(mmkv_store *s)
{
    return call_read(s, op_count, NULL);
}

/* ---- writes (all under the lock) ---- */

/* Probe for c->key in the current table, rebuilding first if an insert into an EMPTY slot
 * would pass the load limit. */
static int store_locate(mmkv_store *s, struct view *v, struct kv_ctx *c, struct table *t,
                        struct probe *p, int inserting)
{
    for (int pass = 0;; pass++) {
        struct fmt_header *h = view_hdr(v);
        int rc = table_get(s, v, atomic_load(&h->table_desc), t);
        if (rc < 0)
            return rc;
        rc = table_probe(s, v, t, c->hash, c->key, c->klen, 1, p);
        if (rc < 0)
            return rc;
        if (!inserting || p->found != UINT64_MAX || pass > 0)
            break;
        if (p->free != UINT64_MAX &&
            atomic_load_explicit(&t->slots[p->free], memory_order_relaxed) == FMT_TOMB)
            break;
        uint64_t used = atomic_load(&h->table_used);
        if (p->free != UINT64_MAX && (used + 1) * 10 <= t->cap * 7)
            break;
        rc = table_make_room(s, v);
        if (rc < 0)
            return rc;
    }
    if (inserting && p->found == UINT64_MAX && p->free == UINT64_MAX)
        return MMKV_ECORRUPT;   /* no free slot: only a damaged table gets here */
    return 0;
}

static int store_put_located(mmkv_store *s, struct view *v, struct kv_ctx *c,
                             const struct table *t, const struct probe *p)
{
    struct fmt_header *h = view_hdr(v);
    struct change ch;
    uint64_t idx = p->found != UINT64_MAX ? p->found : p->free;
    ch.slot_off = t->off + FMT_TABLE_SLOTS_OFF + idx * 8;
    ch.new_count = atomic_load(&h->count);
    ch.new_garbage = atomic_load(&h->garbage);
    ch.new_used = atomic_load(&h->table_used);
    if (p->found != UINT64_MAX) {
        ch.new_garbage += fmt_record_len(p->rec->klen, p->rec->vlen);
    } else {
        ch.new_count++;
        if (atomic_load_explicit(&t->slots[idx], memory_order_relaxed) == FMT_EMPTY)
            ch.new_used++;
    }
    return commit_record(s, v, FMT_PUT, c->hash, c->key, c->klen, c->val, c->vlen, &ch);
}

static int store_delete_located(mmkv_store *s, struct view *v, struct kv_ctx *c,
                                const struct table *t, const struct probe *p)
{
    struct fmt_header *h = view_hdr(v);
    struct change ch;
    ch.slot_off = t->off + FMT_TABLE_SLOTS_OFF + p->found * 8;
    ch.new_count = atomic_load(&h->count) - 1;
    ch.new_garbage = atomic_load(&h->garbage) + fmt_record_len(p->rec->klen, p->rec->vlen);
    ch.new_used = atomic_load(&h->table_used);
    return commit_record(s, v, FMT_DEL, c->hash, c->key, c->klen, NULL, 0, &ch);
}

static int64_t op_put(mmkv_store *s, struct view *v, void *arg)
{
    struct kv_ctx *c = arg;
    c->hash = fmt_siphash13(v->g->sipkey, c->key, c->klen);
    if (c->klen > v->g->max_klen || c->vlen > v->g->max_vlen)
        return MMKV_ETOOBIG;
    struct table t;
    struct probe p;
    int rc = store_locate(s, v, c, &t, &p, 1);
    return rc < 0 ? rc : store_put_located(s, v, c, &t, &p);
}

static int64_t op_delete(mmkv_store *s, struct view *v, void *arg)
{
    struct kv_ctx *c = arg;
    c->hash = fmt_siphash13(v->g->sipkey, c->key, c->klen);
    struct table t;
    struct probe p;
    int rc = store_locate(s, v, c, &t, &p, 0);
    if (rc < 0)
        return rc;
    if (p.found == UINT64_MAX)
        return MMKV_ENOTFOUND;
    return store_delete_located(s, v, c, &t, &p);
}

static int64_t op_pop(mmkv_store *s, struct view *v, void *arg)
{
    struct kv_ctx *c = arg;
    c->hash = fmt_siphash13(v->g->sipkey, c->key, c->klen);
    struct table t;
    struct probe p;
    int rc = store_locate(s, v, c, &t, &p, 0);
    if (rc < 0)
        return rc;
    if (p.found == UINT64_MAX)
        return MMKV_ENOTFOUND;
    int64_t n = store_copy_value(p.rec, c->buf, c->cap);
    if (n < 0 || (uint64_t)n > c->cap)
        return n;
    rc = store_delete_located(s, v, c, &t, &p);
    return rc < 0 ? rc : n;
}

static int64_t op_setdefault(mmkv_store *s, struct view *v, void *arg)
{
    struct kv_ctx *c = arg;
    c->hash = fmt_siphash13(v->g->sipkey, c->key, c->klen);
    struct table t;
    struct probe p;
    int rc = store_locate(s, v, c, &t, &p, 1);
    if (rc < 0)
        return rc;
    if (p.found != UINT64_MAX)
        return store_copy_value(p.rec, c->buf, c->cap);
    if (c->vlen > c->cap)
        return (int64_t)c->vlen;
    rc = store_put_located(s, v, c, &t, &p);
    if (rc < 0)
        return rc;
    if (c->vlen)
        memcpy(c->buf, c->val, c->vlen);
    return (int64_t)c->vlen;
}

/* incr's integer syntax, as Redis (string2ll): "0", or an optional '-' and 1 to 19 digits
 * without a leading zero; no '+', no spaces, no "-0". */
static int store_parse_int(const char *p, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (n == 1 && p[0] == '0') {
        *out = 0;
        return 0;
    }
    if (n && p[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n || n - i > 19 || p[i] == '0')
        return MMKV_EVALUE;
    uint64_t acc = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return MMKV_EVALUE;
        acc = acc * 10 + (uint64_t)(p[i] - '0');
    }
    if (acc > (uint64_t)INT64_MAX + (neg ? 1u : 0u))
        return MMKV_ERANGE;
    *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return 0;
}

static int64_t op_incr(mmkv_store *s, struct view *v, void *arg)
{
    struct kv_ctx *c = arg;
    c->hash = fmt_siphash13(v->g->sipkey, c->key, c->klen);
    struct table t;
    struct probe p;
    int rc = store_locate(s, v, c, &t, &p, 1);
    if (rc < 0)
        return rc;
    int64_t cur = 0, next;
    if (p.found != UINT64_MAX) {
        if (fmt_record_crc(p.rec) != p.rec->crc)
            return MMKV_ECORRUPT;
        rc = store_parse_int((const char *)(p.rec + 1) + p.rec->klen, p.rec->vlen, &cur);
        if (rc < 0)
            return rc == MMKV_ERANGE ? MMKV_EVALUE : rc;
    }
    if (__builtin_add_overflow(cur, c->delta, &next))
        return MMKV_ERANGE;
    char text[32];
    int n = snprintf(text, sizeof(text), "%lld", (long long)next);
    c->val = text;
    c->vlen = (size_t)n;
    rc = store_put_located(s, v, c, &t, &p);
    if (rc < 0)
        return rc;
    *c->result = next;
    return 0;
}

static int64_t op_cas(mmkv_store *s, struct view *v, void *arg)
{
    struct kv_ctx *c = arg;
    c->hash = fmt_siphash13(v->g->sipkey, c->key, c->klen);
    struct table t;
    struct probe p;
    int rc = store_locate(s, v, c, &t, &p, !c->flag_b);
    if (rc < 0)
        return rc;
    int present = p.found != UINT64_MAX;
    if (c->flag_a) {
        if (present)
            return 0;
    } else {
        if (!present || p.rec->vlen != c->elen ||
            memcmp((const char *)(p.rec + 1) + p.rec->klen, c->expected, c->elen) != 0)
            return 0;
        if (fmt_record_crc(p.rec) != p.rec->crc)
            return MMKV_ECORRUPT;
    }
    if (c->flag_b)
        rc = present ? store_delete_located(s, v, c, &t, &p) : 0;
    else
        rc = store_put_located(s, v, c, &t, &p);
    return rc < 0 ? rc : 1;
}

static int64_t op_popitem(mmkv_store *s, struct view *v, void *arg)
{
    struct kv_ctx *c = arg;
    struct fmt_header *h = view_hdr(v);
    struct table t;
    int rc = table_get(s, v, atomic_load(&h->table_desc), &t);
    if (rc < 0)
        return rc;
    if (atomic_load(&h->count) == 0)
        return MMKV_ENOTFOUND;
    for (uint64_t n = 0; n < t.cap; n++) {
        uint64_t i = (s->popitem_hint + n) & (t.cap - 1);
        uint64_t w = atomic_load_explicit(&t.slots[i], memory_order_relaxed);
        if (w <= FMT_TOMB)
            continue;
        const struct fmt_record *r;
        if ((rc = table_record(s, v, w, &r)) < 0)
            return rc;
        uint64_t total = (uint64_t)r->klen + r->vlen;
        if (r->type != FMT_PUT)
            return MMKV_ECORRUPT;
        if (total > c->cap)
            return (int64_t)total;
        if (fmt_record_crc(r) != r->crc)
            return MMKV_ECORRUPT;
        memcpy(c->buf, r + 1, total);
        *c->klen_out = r->klen;
        struct probe p = {.found = i, .free = UINT64_MAX, .rec = r};
        c->key = (const char *)(r + 1);
        c->klen = r->klen;
        c->hash = r->hash;
        s->popitem_hint = i;
        rc = store_delete_located(s, v, c, &t, &p);
        return rc < 0 ? rc : (int64_t)total;
    }
    return MMKV_ENOTFOUND;
}

static int64_t op_clear(mmkv_store *s, struct view *v, void *arg)
{
    (void)arg;
    struct fmt_header *h = view_hdr(v);
    if (atomic_load(&h->count) == 0)
        return 0;
    return table_reset(s, v);
}

int mmkv_put(mmkv_store *s, const char *key, size_t klen, const char *val, size_t vlen)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0 || vlen > store_max_vlen(s))
        return store_refuse(s, MMKV_ETOOBIG);
    struct kv_ctx c = {.key = key, .klen = klen, .val = val, .vlen = vlen};
    return (int)call_write(s, op_put, &c);
}

int mmkv_delete(mmkv_store *s, const char *key, size_t klen)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0)
        return store_refuse(s, s->readonly ? MMKV_ERDONLY : MMKV_ENOTFOUND);
    struct kv_ctx c = {.key = key, .klen = klen};
    return (int)call_write(s, op_delete, &c);
}

int mmkv_clear(mmkv_store *s)
{
    return (int)call_write(s, op_clear, NULL);
}

int64_t mmkv_pop(mmkv_store *s, const char *key, size_t klen, char *buf, size_t cap)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0)
        return store_refuse(s, s->readonly ? MMKV_ERDONLY : MMKV_ENOTFOUND);
    struct kv_ctx c = {.key = key, .klen = klen, .buf = buf, .cap = cap};
    return call_write(s, op_pop, &c);
}

int64_t mmkv_setdefault(mmkv_store *s, const char *key, size_t klen, const char *dflt,
                        size_t dlen, char *buf, size_t cap)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0 || dlen > store_max_vlen(s))
        return store_refuse(s, MMKV_ETOOBIG);
    struct kv_ctx c = {.key = key, .klen = klen, .val = dflt, .vlen = dlen, .buf = buf, .cap = cap};
    return call_write(s, op_setdefault, &c);
}

int64_t mmkv_popitem(mmkv_store *s, char *buf, size_t cap, size_t *klen_out)
{
    struct kv_ctx c = {.buf = buf, .cap = cap, .klen_out = klen_out};
    return call_write(s, op_popitem, &c);
}

int mmkv_incr(mmkv_store *s, const char *key, size_t klen, int64_t delta, int64_t *result)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0)
        return store_refuse(s, MMKV_ETOOBIG);
    struct kv_ctx c = {.key = key, .klen = klen, .delta = delta, .result = result};
    return (int)call_write(s, op_incr, &c);
}

int mmkv_cas(mmkv_store *s, const char *key, size_t klen, int expected_absent,
             const char *expected, size_t elen, int new_delete, const char *nval, size_t nlen)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0 || (!new_delete && nlen > store_max_vlen(s)))
        return store_refuse(s, MMKV_ETOOBIG);
    struct kv_ctx c = {.key = key, .klen = klen, .val = nval, .vlen = nlen, .expected = expected,
                       .elen = elen, .flag_a = expected_absent, .flag_b = new_delete};
    return (int)call_write(s, op_cas, &c);
}

/* ---- the user-held lock ---- */

/* Inside the write frame, which holds the mutex: hold it once more, as lock()'s. */
static int64_t op_lock(mmkv_store *s, struct view *v, void *arg)
{
    (void)arg;
    int rc = lock_acquire(s, v);
    return rc < 0 ? rc : lock_user_take(s, v);
}

int mmkv_lock(mmkv_store *s)
{
    guard_reassert();
    return (int)call_write(s, op_lock, NULL);
}

int mmkv_lock_depth(mmkv_store *s)
{
    if (!s || !s->lock_gen || s->lock_token != lock_token() || !lock_held_by_me(s->lock_gen))
        return 0;
    return s->user_locks;
}

static int64_t op_unlock(void *s)
{
    return lock_user_drop(s);
}

int mmkv_unlock(mmkv_store *s)
{
    if (!s)
        return MMKV_ENOTLOCKED;
    struct gen *g = s->lock_gen;
    if (!g || s->user_locks <= 0 || !lock_held_by_me(g))
        return MMKV_ENOTLOCKED;
    /* the lock() pin keeps g mapped, even after close: guard the lock page only */
    return (int)guard_run(op_unlock, s);
}

/* ---- sync and stats ---- */

static int64_t op_sync(mmkv_store *s, struct view *v, void *arg)
{
    (void)arg;
    if (s->shm)
        return 0;
    if (s->readonly)
        return os_vt.fdatasync(v->g->fd);
    /* phase 1 makes the log durable up to t; phase 2 records t as synced_tail.  One sync
     * for both could put synced_tail on disk before the records it vouches for, and a power
     * loss then would turn a store that lost only unreturned writes into CorruptError. */
    uint64_t t = atomic_load(&view_hdr(v)->tail);
    int rc = os_vt.fdatasync(v->g->fd);
    if (rc < 0)
        return rc;
    rc = lock_acquire(s, v);
    if (rc < 0)
        return rc;
    struct fmt_header *h = view_hdr(v);
    if (atomic_load(&h->synced_tail) < t) {
        atomic_store(&h->synced_tail, t);
        rc = os_vt.fdatasync(v->g->fd);
    }
    lock_release(v);
    return rc;
}

int mmkv_sync(mmkv_store *s)
{
    guard_reassert();
    return (int)call_read(s, op_sync, NULL);
}

static int64_t op_stats(mmkv_store *s, struct view *v, void *arg)
{
    (void)s;
    struct mmkv_stats *o = arg;
    struct fmt_header *h = view_hdr(v);
    o->count = atomic_load(&h->count);
    o->file_size = atomic_load(&h->file_size);
    o->tail = atomic_load(&h->tail);
    o->reclaimable_bytes = compact_reclaimable(v);
    o->table_capacity = 1ull << (fmt_desc_lg(atomic_load(&h->table_desc)) & 63);
    o->table_used = atomic_load(&h->table_used);
    o->synced_tail = atomic_load(&h->synced_tail);
    o->seq = atomic_load(&h->seq);
    o->epoch = atomic_load(&h->epoch);
    o->max_key_len = h->max_key_len;
    o->max_value_len = h->max_value_len;
    o->format_version = h->version;
    o->compaction_error = s->compact_error;
    return 0;
}

int mmkv_stats(mmkv_store *s, struct mmkv_stats *out)
{
    guard_reassert();
    return (int)call_read(s, op_stats, out);
}

/* ---- check and compact ---- */

struct check_ctx {
    char *report;
    size_t cap;
    struct mmkv_check_report *out;
};

static int64_t op_check(mmkv_store *s, struct view *v, void *arg)
{
    struct check_ctx *c = arg;
    return check_full(s, v, c->report, c->cap, c->out);
}

int mmkv_check(mmkv_store *s, char *report, size_t cap, struct mmkv_check_report *out)
{
    struct check_ctx c = {report, cap, out};
    /* writers hold the lock during the check so that the log and the table hold still */
    return (int)(s && !s->readonly ? call_write(s, op_check, &c) : call_read(s, op_check, &c));
}

static int64_t op_verify(mmkv_store *s, struct view *v, void *arg)
{
    struct check_ctx *c = arg;
    return check_verify(s, v, c->report, c->cap, c->out);
}

int mmkv_verify(mmkv_store *s, char *report, size_t cap, struct mmkv_check_report *out)
{
    struct check_ctx c = {report, cap, out};
    return (int)(s && !s->readonly ? call_write(s, op_verify, &c) : call_read(s, op_verify, &c));
}

/* Refused inside lock(): the holder keeps the old file's mutex, which compaction retires. */
static int64_t op_compact(mmkv_store *s, struct view *v, void *arg)
{
    (void)arg;
    if (v->g->depth > 1)
        return MMKV_EBUSY;
    wait_begin();
    int rc = compact_run(s, v);
    wait_end();
    return rc;
}

int mmkv_compact(mmkv_store *s)
{
    guard_reassert();
    return (int)call_write(s, op_compact, NULL);
}

const char *mmkv_strerror(int rc)
{
    switch (rc) {
    case MMKV_ENOTFOUND: return "key not found";
    case MMKV_ECORRUPT: return "the store is damaged";
    case MMKV_ENOTSTORE: return "not an mmkv store";
    case MMKV_ETOOBIG: return "key or value too large for this store";
    case MMKV_ERDONLY: return "the store is open read-only";
    case MMKV_ECLOSED: return "the store is closed";
    case MMKV_EFAULT: return "the store's file was truncated or became unreadable underneath";
    case MMKV_EBUFSIZE: return "buffer too small";
    case MMKV_EVALUE: return "the value is not a decimal integer";
    case MMKV_ERANGE: return "the result is outside the 64-bit signed range";
    case MMKV_EBUSY: return "not allowed while this thread holds the store's lock";
    case MMKV_EFULL: return "the hash table reached its maximum capacity";
    case MMKV_ENOTLOCKED: return "the lock is not held by this thread through this handle";
    case MMKV_EINVAL: return "invalid argument";
    case MMKV_EWAIT: return "the store's lock is held elsewhere";
    case MMKV_ELINKED: return "the store's file has more than one hard link; replacing it (compaction, flag \"n\") would replace only one of its names";
    default: return rc < 0 && rc > -4096 ? strerror(-rc) : "unknown error";
    }
}
