/* store.c - the exported functions: validate arguments, guard the mapping, take the lock,
 * call the table and commit layers.  Also opening (first-opener detection, lock
 * reinitialisation, recovery), the mapping and its growth, and closing.
 *
 * Growth and remapping.  Each handle reserves a large range of address space once and maps
 * the file at its start; when the file grows (header.file_size, published by the writer
 * after fallocate) a handle maps the new part in place (MAP_FIXED inside the reservation),
 * so addresses never move under other threads.  A file that outgrows the reservation gets a
 * new one; the old one stays mapped until close, so pointers taken from it stay valid (it
 * maps the same file pages).  Readers extend lazily, only when a slot points past their
 * mapping; writers extend before writing.
 *
 * Every entry point runs inside the SIGBUS guard and counts itself in `inflight`, so close
 * waits for calls in progress on other threads and never unmaps memory they use.
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

#define STORE_MIN_RESERVE (64ull << 30)

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static mmkv_store *registry;

/* ---- the mapping ---- */

void store_view(mmkv_store *s, struct view *v)
{
    struct mapping *m = atomic_load_explicit(&s->map, memory_order_acquire);
    v->base = m->base;
    v->len = atomic_load_explicit(&m->len, memory_order_acquire);
}

static struct mapping *store_new_mapping(mmkv_store *s, uint64_t size)
{
    uint64_t want = size * 4 > STORE_MIN_RESERVE ? size * 4 : STORE_MIN_RESERVE;
    struct mapping *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    for (; want >= size && want >= FMT_PAGE; want /= 2) {
        m->base = os_reserve(want);
        if (m->base)
            break;
    }
    if (!m->base || os_map_fixed(m->base, size, s->fd, 0, !s->readonly) < 0) {
        if (m->base)
            os_unmap(m->base, want);
        free(m);
        return NULL;
    }
    m->reserved_len = want;
    atomic_store(&m->len, size);
    return m;
}

/* Map the file up to header.file_size (and at least `need` bytes, else ECORRUPT: something
 * points past the allocated file).  The file may be shorter than the header says if it was
 * truncated underneath; only what exists is mapped. */
int store_extend(mmkv_store *s, struct view *v, uint64_t need)
{
    if (need && need <= v->len)
        return 0;
    uint64_t target = atomic_load_explicit(&view_hdr(v)->file_size, memory_order_acquire);
    if (need > target)
        return MMKV_ECORRUPT;
    int rc = 0;
    pthread_mutex_lock(&s->map_mu);
    struct mapping *m = atomic_load(&s->map);
    uint64_t have = atomic_load(&m->len);
    if (target > have) {
        uint64_t size, dev, ino;
        rc = os_vt.fstat_size(s->fd, &size, &dev, &ino);
        if (rc == 0 && target > size)
            target = size & ~(uint64_t)(FMT_PAGE - 1);
        if (rc == 0 && need > target)
            rc = MMKV_EFAULT;
    }
    if (rc == 0 && target > have) {
        if (target <= m->reserved_len) {
            rc = os_map_fixed(m->base + have, target - have, s->fd, have, !s->readonly);
            if (rc == 0)
                atomic_store_explicit(&m->len, target, memory_order_release);
        } else {
            struct mapping *n = store_new_mapping(s, target);
            if (!n) {
                rc = -ENOMEM;
            } else {
                n->older = m;
                atomic_store_explicit(&s->map, n, memory_order_release);
            }
        }
    }
    pthread_mutex_unlock(&s->map_mu);
    store_view(s, v);
    if (rc == 0 && need > v->len)
        rc = MMKV_EFAULT;
    return rc;
}

/* ---- guarded calls ---- */

typedef int64_t (*store_op)(mmkv_store *s, struct view *v, void *ctx);

/* After a fault while holding the lock: undo or finish the write, release the lock.  Each
 * step is guarded again, since the mapping may be gone entirely. */
static void store_fault_cleanup(mmkv_store *s)
{
    sigjmp_buf env;
    if (sigsetjmp(env, 0) == 0) {
        guard_arm(&env);
        struct view v;
        store_view(s, &v);
        commit_recover(&v);
    }
    guard_disarm();
    if (sigsetjmp(env, 0) == 0) {
        guard_arm(&env);
        lock_release(s);
    }
    guard_disarm();
}

static int store_sync_locked(mmkv_store *s, struct view *v)
{
    if (s->shm)
        return 0;
    struct fmt_header *h = view_hdr(v);
    uint64_t t = atomic_load(&h->tail);
    int rc = os_vt.fdatasync(s->fd);
    if (rc < 0)
        return rc;
    if (atomic_load(&h->synced_tail) < t) {
        atomic_store(&h->synced_tail, t);
        rc = os_vt.fdatasync(s->fd);
    }
    return rc;
}

static int64_t store_guarded(mmkv_store *s, store_op fn, void *ctx, int write)
{
    sigjmp_buf env;
    volatile int locked = 0;
    if (sigsetjmp(env, 0)) {
        guard_disarm();
        if (locked)
            store_fault_cleanup(s);
        return MMKV_EFAULT;
    }
    guard_arm(&env);
    struct view v;
    store_view(s, &v);
    int64_t rc;
    if (write) {
        rc = lock_acquire(s, &v);
        if (rc < 0)
            goto out;
        locked = 1;
        atomic_signal_fence(memory_order_seq_cst);
    }
    rc = fn(s, &v, ctx);
    if (write) {
        if (rc >= 0 && s->durable) {
            int src = store_sync_locked(s, &v);
            if (src < 0)
                rc = src;
        }
        lock_release(s);
        atomic_signal_fence(memory_order_seq_cst);
        locked = 0;
    }
out:
    guard_disarm();
    return rc;
}

static int64_t store_call(mmkv_store *s, store_op fn, void *ctx, int write)
{
    if (!s)
        return MMKV_ECLOSED;
    atomic_fetch_add(&s->inflight, 1);
    int64_t rc;
    if (atomic_load(&s->closed))
        rc = MMKV_ECLOSED;
    else if (write && s->readonly)
        rc = MMKV_ERDONLY;
    else
        rc = store_guarded(s, fn, ctx, write);
    atomic_fetch_sub(&s->inflight, 1);
    return rc;
}

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
};

static int store_check_key(mmkv_store *s, size_t klen)
{
    return klen > s->max_klen ? MMKV_ETOOBIG : 0;
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

/* A lock-free read: probe the current table, copy, and retry if the table was rebuilt in
 * the meantime (the descriptor re-check is a seqlock over one atomic word). */
static int64_t op_get(mmkv_store *s, struct view *v, void *arg)
{
    struct kv_ctx *c = arg;
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
    if (klen > s->max_klen)
        return MMKV_ENOTFOUND;
    struct kv_ctx c = {.key = key, .klen = klen, .buf = buf, .cap = cap};
    c.hash = fmt_siphash13(s->sipkey, key, klen);
    return store_call(s, op_get, &c, 0);
}

int mmkv_contains(mmkv_store *s, const char *key, size_t klen)
{
    if (!s)
        return MMKV_ECLOSED;
    if (klen > s->max_klen)
        return atomic_load(&s->closed) ? MMKV_ECLOSED : 0;
    struct kv_ctx c = {.key = key, .klen = klen, .buf = NULL};
    c.hash = fmt_siphash13(s->sipkey, key, klen);
    int64_t rc = store_call(s, op_get, &c, 0);
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
    return store_call(s, op_count, NULL, 0);
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
    struct table t;
    struct probe p;
    int rc = store_locate(s, v, c, &t, &p, 1);
    return rc < 0 ? rc : store_put_located(s, v, c, &t, &p);
}

static int64_t op_delete(mmkv_store *s, struct view *v, void *arg)
{
    struct kv_ctx *c = arg;
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

/* incr's integer syntax, as Redis: optional sign, 1 to 19 decimal digits, nothing else. */
static int store_parse_int(const char *p, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (n && (p[0] == '-' || p[0] == '+')) {
        neg = p[0] == '-';
        i = 1;
    }
    if (i == n || n - i > 19)
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
    if (store_check_key(s, klen) < 0 || vlen > s->max_vlen)
        return atomic_load(&s->closed) ? MMKV_ECLOSED : MMKV_ETOOBIG;
    struct kv_ctx c = {.key = key, .klen = klen, .val = val, .vlen = vlen};
    c.hash = fmt_siphash13(s->sipkey, key, klen);
    return (int)store_call(s, op_put, &c, 1);
}

int mmkv_delete(mmkv_store *s, const char *key, size_t klen)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0)
        return atomic_load(&s->closed) ? MMKV_ECLOSED : (s->readonly ? MMKV_ERDONLY : MMKV_ENOTFOUND);
    struct kv_ctx c = {.key = key, .klen = klen};
    c.hash = fmt_siphash13(s->sipkey, key, klen);
    return (int)store_call(s, op_delete, &c, 1);
}

int mmkv_clear(mmkv_store *s)
{
    return (int)store_call(s, op_clear, NULL, 1);
}

int64_t mmkv_pop(mmkv_store *s, const char *key, size_t klen, char *buf, size_t cap)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0)
        return atomic_load(&s->closed) ? MMKV_ECLOSED : (s->readonly ? MMKV_ERDONLY : MMKV_ENOTFOUND);
    struct kv_ctx c = {.key = key, .klen = klen, .buf = buf, .cap = cap};
    c.hash = fmt_siphash13(s->sipkey, key, klen);
    return store_call(s, op_pop, &c, 1);
}

int64_t mmkv_setdefault(mmkv_store *s, const char *key, size_t klen, const char *dflt,
                        size_t dlen, char *buf, size_t cap)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0 || dlen > s->max_vlen)
        return atomic_load(&s->closed) ? MMKV_ECLOSED : MMKV_ETOOBIG;
    struct kv_ctx c = {.key = key, .klen = klen, .val = dflt, .vlen = dlen, .buf = buf, .cap = cap};
    c.hash = fmt_siphash13(s->sipkey, key, klen);
    return store_call(s, op_setdefault, &c, 1);
}

int64_t mmkv_popitem(mmkv_store *s, char *buf, size_t cap, size_t *klen_out)
{
    struct kv_ctx c = {.buf = buf, .cap = cap, .klen_out = klen_out};
    return store_call(s, op_popitem, &c, 1);
}

int mmkv_incr(mmkv_store *s, const char *key, size_t klen, int64_t delta, int64_t *result)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0)
        return atomic_load(&s->closed) ? MMKV_ECLOSED : MMKV_ETOOBIG;
    struct kv_ctx c = {.key = key, .klen = klen, .delta = delta, .result = result};
    c.hash = fmt_siphash13(s->sipkey, key, klen);
    return (int)store_call(s, op_incr, &c, 1);
}

int mmkv_cas(mmkv_store *s, const char *key, size_t klen, int expected_absent,
             const char *expected, size_t elen, int new_delete, const char *nval, size_t nlen)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0 || (!new_delete && nlen > s->max_vlen))
        return atomic_load(&s->closed) ? MMKV_ECLOSED : MMKV_ETOOBIG;
    struct kv_ctx c = {.key = key, .klen = klen, .val = nval, .vlen = nlen, .expected = expected,
                       .elen = elen, .flag_a = expected_absent, .flag_b = new_delete};
    c.hash = fmt_siphash13(s->sipkey, key, klen);
    return (int)store_call(s, op_cas, &c, 1);
}

/* ---- the user-held lock ---- */

static int64_t op_lock(mmkv_store *s, struct view *v, void *arg)
{
    (void)arg;
    int rc = lock_acquire(s, v);
    if (rc == 0)
        atomic_fetch_add(&s->user_locks, 1);
    return rc;
}

static int64_t op_unlock(mmkv_store *s, struct view *v, void *arg)
{
    (void)v;
    (void)arg;
    if (atomic_load(&s->user_locks) <= 0)
        return MMKV_ENOTLOCKED;
    int rc = pthread_mutex_unlock(&s->lockpg->mutex);
    if (rc != 0)
        return MMKV_ENOTLOCKED;
    atomic_fetch_sub(&s->user_locks, 1);
    return 0;
}

int mmkv_lock(mmkv_store *s)
{
    if (s && !atomic_load(&s->closed) && s->readonly)
        return MMKV_ERDONLY;
    return (int)store_call(s, op_lock, NULL, 0);
}

int mmkv_unlock(mmkv_store *s)
{
    return (int)store_call(s, op_unlock, NULL, 0);
}

void mmkv_after_fork_child(void)
{
    /* The child has its own thread ids: it owns no robust mutex of the parent.  Reset the
     * recursion bookkeeping of every handle it inherited. */
    pthread_mutex_init(&registry_mu, NULL);
    for (mmkv_store *s = registry; s; s = s->next_open) {
        atomic_store(&s->user_locks, 0);
        pthread_mutex_init(&s->map_mu, NULL);
    }
}

/* ---- sync and stats ---- */

static int64_t op_sync(mmkv_store *s, struct view *v, void *arg)
{
    (void)arg;
    if (s->shm)
        return 0;
    if (s->readonly)
        return os_vt.fdatasync(s->fd);
    struct fmt_header *h = view_hdr(v);
    uint64_t t = atomic_load(&h->tail);
    int rc = os_vt.fdatasync(s->fd);
    if (rc < 0)
        return rc;
    rc = lock_acquire(s, v);
    if (rc < 0)
        return rc;
    h = view_hdr(v);
    if (atomic_load(&h->synced_tail) < t) {
        atomic_store(&h->synced_tail, t);
        rc = os_vt.fdatasync(s->fd);
    }
    lock_release(s);
    return rc;
}

int mmkv_sync(mmkv_store *s)
{
    return (int)store_call(s, op_sync, NULL, 0);
}

static int64_t op_stats(mmkv_store *s, struct view *v, void *arg)
{
    (void)s;
    struct mmkv_stats *o = arg;
    struct fmt_header *h = view_hdr(v);
    o->count = atomic_load(&h->count);
    o->file_size = atomic_load(&h->file_size);
    o->tail = atomic_load(&h->tail);
    o->reclaimable_bytes = atomic_load(&h->garbage);
    o->table_capacity = 1ull << (fmt_desc_lg(atomic_load(&h->table_desc)) & 63);
    o->table_used = atomic_load(&h->table_used);
    o->synced_tail = atomic_load(&h->synced_tail);
    o->seq = atomic_load(&h->seq);
    o->epoch = atomic_load(&h->epoch);
    o->max_key_len = h->max_key_len;
    o->max_value_len = h->max_value_len;
    o->format_version = h->version;
    return 0;
}

int mmkv_stats(mmkv_store *s, struct mmkv_stats *out)
{
    return (int)store_call(s, op_stats, out, 0);
}

/* ---- iteration ---- */

struct iter_ctx {
    uint64_t desc, *pos, end;
    char *buf;
    size_t cap;
    uint32_t *lens;
    size_t max_keys, *n, *need;
    uint64_t *current;
};

static int64_t op_iter(mmkv_store *s, struct view *v, void *arg)
{
    struct iter_ctx *c = arg;
    struct table t;
    *c->n = 0;
    *c->current = atomic_load_explicit(&view_hdr(v)->table_desc, memory_order_acquire);
    int rc = table_get(s, v, c->desc, &t);
    if (rc < 0)
        return rc;
    uint64_t end = (c->end == 0 || c->end > t.cap) ? t.cap : c->end, i = *c->pos;
    size_t used = 0, n = 0;
    for (; i < end && n < c->max_keys; i++) {
        uint64_t w = atomic_load_explicit(&t.slots[i], memory_order_acquire);
        if (w <= FMT_TOMB)
            continue;
        const struct fmt_record *r;
        if ((rc = table_record(s, v, w, &r)) < 0)
            return rc;
        if (r->type != FMT_PUT)
            return MMKV_ECORRUPT;
        if (used + r->klen > c->cap) {
            if (n == 0) {
                *c->need = r->klen;
                return MMKV_EBUFSIZE;
            }
            break;
        }
        memcpy(c->buf + used, r + 1, r->klen);
        c->lens[n++] = r->klen;
        used += r->klen;
    }
    *c->pos = i;
    *c->n = n;
    return i >= end ? 1 : 0;
}

uint64_t mmkv_table_desc(mmkv_store *s)
{
    uint64_t d = 0;
    if (!s || atomic_load(&s->closed))
        return 0;
    struct view v;
    atomic_fetch_add(&s->inflight, 1);
    if (!atomic_load(&s->closed)) {
        store_view(s, &v);
        d = atomic_load_explicit(&view_hdr(&v)->table_desc, memory_order_acquire);
    }
    atomic_fetch_sub(&s->inflight, 1);
    return d;
}

int mmkv_iter_scan(mmkv_store *s, uint64_t desc, uint64_t *pos, uint64_t end, char *buf,
                   size_t cap, uint32_t *lens, size_t max_keys, size_t *n, uint64_t *current,
                   size_t *need)
{
    struct iter_ctx c = {desc, pos, end, buf, cap, lens, max_keys, n, need, current};
    return (int)store_call(s, op_iter, &c, 0);
}

/* ---- check ---- */

struct check_ctx {
    char *report;
    size_t cap;
    struct mmkv_check_report *out;
};

static int64_t op_check(mmkv_store *s, struct view *v, void *arg)
{
    struct check_ctx *c = arg;
    int locked = 0;
    if (!s->readonly) {
        int rc = lock_acquire(s, v);
        if (rc < 0)
            return rc;
        locked = 1;
    }
    int rc = recover_check(s, v, c->report, c->cap, c->out);
    if (locked)
        lock_release(s);
    return rc;
}

int mmkv_check(mmkv_store *s, char *report, size_t cap, struct mmkv_check_report *out)
{
    struct check_ctx c = {report, cap, out};
    return (int)store_call(s, op_check, &c, 0);
}

/* ---- open and close ---- */

static void store_registry_add(mmkv_store *s)
{
    pthread_mutex_lock(&registry_mu);
    s->next_open = registry;
    registry = s;
    pthread_mutex_unlock(&registry_mu);
}

static void store_registry_remove(mmkv_store *s)
{
    pthread_mutex_lock(&registry_mu);
    for (mmkv_store **p = &registry; *p; p = &(*p)->next_open)
        if (*p == s) {
            *p = s->next_open;
            break;
        }
    pthread_mutex_unlock(&registry_mu);
}

/* Write a new empty store into fd (a zero-length file we hold exclusively). */
static int store_format(int fd, const struct mmkv_options *opt)
{
    unsigned lg = (unsigned)table_initial_lg(opt ? opt->initial_capacity : 0);
    uint64_t chunk = fmt_table_chunk_len(lg), tail = FMT_ARENA_OFF + chunk;
    uint64_t size = (tail + (64ull << 10) + (64ull << 10) - 1) & ~((64ull << 10) - 1);
    int rc = os_vt.fallocate(fd, 0, size);
    if (rc < 0) {
        os_vt.ftruncate(fd, 0);
        return rc;
    }
    uint8_t *page = calloc(1, FMT_ARENA_OFF + FMT_TABLE_SLOTS_OFF);
    if (!page)
        return -ENOMEM;
    struct fmt_header *h = (struct fmt_header *)page;
    memcpy(h->magic, FMT_MAGIC, 8);
    h->version = FMT_VERSION;
    h->page_size = FMT_PAGE;
    os_random(h->uuid, 16);
    os_random(h->sipkey, 16);
    h->created_ns = os_now_ns();
    h->max_key_len = opt && opt->max_key_len ? opt->max_key_len : FMT_DEFAULT_KLEN;
    h->max_value_len = opt && opt->max_value_len ? opt->max_value_len : FMT_DEFAULT_VLEN;
    h->hdr_crc = fmt_header_crc(h);
    atomic_store(&h->table_desc, fmt_desc(FMT_ARENA_OFF, lg));
    atomic_store(&h->tail, tail);
    atomic_store(&h->file_size, size);
    atomic_store(&h->seq, 1);
    atomic_store(&h->epoch, 1);
    atomic_store(&h->synced_tail, tail);
    struct fmt_record *r = (struct fmt_record *)(page + FMT_ARENA_OFF);
    commit_write_header(r, FMT_TABLE, 0, (uint32_t)(chunk - sizeof(*r)), 1, 1, 0);
    uint64_t cap = 1ull << lg;
    memcpy((uint8_t *)r + sizeof(*r), &cap, 8);
    r->crc = fmt_record_crc(r);
    rc = os_vt.pwrite(fd, page, FMT_ARENA_OFF + FMT_TABLE_SLOTS_OFF, 0);
    free(page);
    if (rc == 0)
        rc = os_vt.fdatasync(fd);
    return rc;
}

/* flag "n": build the new store beside the path and rename it over whatever is there, so
 * the path holds either the old file or a whole new store, never a half-written one. */
static int store_create_new(const char *path, unsigned mode, const struct mmkv_options *opt)
{
    char tmp[PATH_MAX];
    uint32_t rnd;
    os_random(&rnd, sizeof(rnd));
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.new-%d-%08x", path, (int)getpid(), rnd) >= sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = os_vt.open(tmp, O_RDWR | O_CREAT | O_EXCL, mode);
    if (fd < 0)
        return fd;
    int rc = store_format(fd, opt);
    os_vt.close(fd);
    if (rc == 0)
        rc = os_vt.rename(tmp, path);
    if (rc < 0) {
        os_vt.unlink(tmp);
        return rc;
    }
    /* the rename must reach the disk before anyone relies on the new store */
    os_vt.fsync_dir(path);
    return 0;
}

static int store_read_header(int fd, struct fmt_header *h, uint64_t size)
{
    if (size < FMT_ARENA_OFF + FMT_TABLE_SLOTS_OFF)
        return MMKV_ENOTSTORE;
    ssize_t n = pread(fd, h, sizeof(*h), 0);
    if (n != (ssize_t)sizeof(*h))
        return n < 0 ? -errno : MMKV_ENOTSTORE;
    return fmt_header_validate(h);
}

/* The mutable header words, checked once at open (readers check again on every use). */
static int store_validate_open(mmkv_store *s, struct view *v)
{
    struct fmt_header *h = view_hdr(v);
    uint64_t tail = atomic_load(&h->tail), size = atomic_load(&h->file_size);
    if (tail < FMT_ARENA_OFF || tail > size || (tail & 7))
        return MMKV_ECORRUPT;
    struct table t;
    int rc = table_get(s, v, atomic_load(&h->table_desc), &t);
    if (rc < 0)
        return rc;
    if (t.off + FMT_TABLE_SLOTS_OFF + t.cap * 8 > tail || atomic_load(&h->count) > t.cap)
        return MMKV_ECORRUPT;
    return 0;
}

/* First opener (no other handle anywhere): the mutex may name a dead thread or come from
 * another machine, so make it new; finish what crashed writers left. */
static int store_recover_alone(mmkv_store *s, struct view *v, const uint8_t boot[16])
{
    struct fmt_header *h = view_hdr(v);
    lock_init(s->lockpg, boot, s->dev, s->ino);
    int rc = 0;
    if (atomic_load(&h->dirty) && memcmp(h->boot_id, boot, 16) != 0 && !s->shm)
        rc = recover_scan(s, v);          /* possible power loss: trust only the log */
    else
        commit_recover(v);                /* a process crash: the page cache is intact */
    if (rc < 0)
        return rc;
    memcpy(h->boot_id, boot, 16);
    atomic_store(&h->dirty, 1);
    return 0;
}

static int store_attach_locks(mmkv_store *s, struct view *v, int alone)
{
    uint8_t boot[16];
    os_boot_id(boot);
    if (alone)
        return store_recover_alone(s, v, boot);
    /* Others have it open.  If none of them is a writer of this boot, the mutex may be
     * stale: reinitialise it under the init lock (byte 1), which every writer takes here. */
    int rc = os_ofd_lock(s->fd, F_WRLCK, 1, 1);
    if (rc < 0)
        return rc;
    if (!lock_stamp_matches(s->lockpg, boot, s->dev, s->ino)) {
        lock_init(s->lockpg, boot, s->dev, s->ino);
        commit_recover(v);
    }
    os_ofd_lock(s->fd, F_UNLCK, 1, 0);
    return 0;
}

static int store_map_all(mmkv_store *s, uint64_t size)
{
    struct mapping *m = store_new_mapping(s, size);
    if (!m)
        return -ENOMEM;
    atomic_store(&s->map, m);
    if (!s->readonly) {
        s->lockpg = os_map(FMT_PAGE, s->fd, FMT_LOCK_OFF, 1);
        if (!s->lockpg)
            return -errno;
    }
    return 0;
}

static int store_attach_guarded(mmkv_store *s, uint64_t size, int alone)
{
    sigjmp_buf env;
    if (sigsetjmp(env, 0)) {
        guard_disarm();
        return MMKV_EFAULT;
    }
    guard_arm(&env);
    int rc = store_map_all(s, size);
    struct view v;
    if (rc == 0) {
        store_view(s, &v);
        rc = store_validate_open(s, &v);
    }
    if (rc == 0 && !s->readonly)
        rc = store_attach_locks(s, &v, alone);
    if (rc == 0 && !s->readonly)
        rc = store_validate_open(s, &v);
    guard_disarm();
    return rc;
}

/* Liveness: every handle holds a read OFD lock on byte 0 for its life.  A writer that can
 * take the write lock on byte 0 is alone; it initialises or recovers, then downgrades.
 * Others wait on the read lock until that is done. */
static int store_attach(mmkv_store *s, int flag, const struct mmkv_options *opt)
{
    int alone = 0, rc;
    if (!s->readonly) {
        rc = os_ofd_lock(s->fd, F_WRLCK, 0, 0);
        if (rc == 0)
            alone = 1;
        else if (rc != -EAGAIN)
            return rc;
    }
    if (!alone && (rc = os_ofd_lock(s->fd, F_RDLCK, 0, 1)) < 0)
        return rc;
    uint64_t size;
    if ((rc = os_vt.fstat_size(s->fd, &size, &s->dev, &s->ino)) < 0)
        return rc;
    if (size == 0 && alone && flag == MMKV_OPEN_CREATE) {
        if ((rc = store_format(s->fd, opt)) < 0)
            return rc;
        if ((rc = os_vt.fstat_size(s->fd, &size, &s->dev, &s->ino)) < 0)
            return rc;
    }
    struct fmt_header h;
    if ((rc = store_read_header(s->fd, &h, size)) < 0)
        return rc;
    memcpy(s->sipkey, h.sipkey, 16);
    s->max_klen = h.max_key_len;
    s->max_vlen = h.max_value_len;
    uint64_t fsize = atomic_load(&h.file_size);
    if (fsize > size || fsize < FMT_ARENA_OFF + FMT_PAGE || (fsize & (FMT_PAGE - 1)))
        return MMKV_ECORRUPT;
    rc = store_attach_guarded(s, fsize, alone);
    if (rc < 0)
        return rc;
    if (alone)
        rc = os_ofd_lock(s->fd, F_RDLCK, 0, 0);
    return rc;
}

static void store_release(mmkv_store *s)
{
    struct mapping *m = atomic_load(&s->map);
    while (m) {
        struct mapping *older = m->older;
        os_unmap(m->base, m->reserved_len);
        free(m);
        m = older;
    }
    atomic_store(&s->map, NULL);
    if (s->lockpg)
        os_unmap(s->lockpg, FMT_PAGE);
    s->lockpg = NULL;
    if (s->fd >= 0)
        os_vt.close(s->fd);
    s->fd = -1;
}

static int store_check_options(int flag, const struct mmkv_options *opt)
{
    if (flag < MMKV_OPEN_READ || flag > MMKV_OPEN_NEW)
        return MMKV_EINVAL;
    if (!opt)
        return 0;
    if (opt->max_key_len > FMT_MAX_KLEN || opt->max_value_len > FMT_MAX_VLEN)
        return MMKV_EINVAL;
    if (opt->initial_capacity > ((1ull << FMT_MAX_CAP_LG) * 7) / 10)
        return MMKV_EINVAL;
    return 0;
}

int mmkv_open(const char *path, int flag, unsigned mode, const struct mmkv_options *opt,
              mmkv_store **out)
{
    *out = NULL;
    int shm = (flag & MMKV_OPEN_SHM) != 0;
    flag &= 0xff;
    int rc = store_check_options(flag, opt);
    if (rc < 0)
        return rc;
    if ((rc = guard_install()) < 0)
        return rc;
    char real[PATH_MAX];
    if (shm)
        rc = os_shm_path(path, real, sizeof(real));
    else if (strlen(path) >= sizeof(real) || path[0] == 0)
        rc = path[0] ? -ENAMETOOLONG : -ENOENT;
    else
        strcpy(real, path);
    if (rc < 0)
        return rc;
    mmkv_store *s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(real))) {
        free(s);
        return -ENOMEM;
    }
    s->fd = -1;
    s->shm = shm;
    s->readonly = flag == MMKV_OPEN_READ;
    s->durable = opt ? opt->durable : 0;
    s->pid = getpid();
    pthread_mutex_init(&s->map_mu, NULL);
    if (flag == MMKV_OPEN_NEW) {
        rc = store_create_new(real, mode, opt);
        flag = MMKV_OPEN_WRITE;
    }
    if (rc == 0) {
        int oflags = (s->readonly ? O_RDONLY : O_RDWR) | (flag == MMKV_OPEN_CREATE ? O_CREAT : 0);
        rc = s->fd = os_vt.open(real, oflags, mode);
    }
    if (rc >= 0)
        rc = store_attach(s, flag, opt);
    if (rc < 0) {
        store_release(s);
        free(s->path);
        free(s);
        return rc;
    }
    store_registry_add(s);
    *out = s;
    return 0;
}

/* The last handle anywhere (it can take the write lock on byte 0) marks the file clean,
 * after a sync: a clean file needs no recovery scan even after a reboot. */
static void store_close_last(mmkv_store *s)
{
    sigjmp_buf env;
    if (sigsetjmp(env, 0) == 0) {
        guard_arm(&env);
        if (os_ofd_lock(s->fd, F_WRLCK, 0, 0) == 0) {
            struct view v;
            store_view(s, &v);
            struct fmt_header *h = view_hdr(&v);
            if (s->shm || os_vt.fdatasync(s->fd) == 0) {
                atomic_store(&h->synced_tail, atomic_load(&h->tail));
                atomic_store(&h->dirty, 0);
                if (!s->shm)
                    os_vt.fdatasync(s->fd);
            }
        }
    }
    guard_disarm();
}

int mmkv_close(mmkv_store *s)
{
    if (!s || atomic_load(&s->closed))
        return 0;
    int mine = s->pid == getpid();
    if (mine && atomic_load(&s->user_locks) > 0)
        return MMKV_EBUSY;
    if (atomic_exchange(&s->closed, 1))
        return 0;
    while (atomic_load(&s->inflight) > 0)
        sched_yield();
    store_registry_remove(s);
    if (mine && !s->readonly)
        store_close_last(s);
    store_release(s);
    return 0;
}

void mmkv_free(mmkv_store *s)
{
    if (!s)
        return;
    if (mmkv_close(s) == MMKV_EBUSY)
        return;   /* the lock page must stay mapped while the mutex is held: leak instead */
    free(s->path);
    free(s);
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
    case MMKV_EBUSY: return "a thread of this process holds the store's lock";
    case MMKV_ESWITCHED: return "the table changed";
    case MMKV_EFULL: return "the hash table reached its maximum capacity";
    case MMKV_ENOTLOCKED: return "the lock is not held by this thread through this handle";
    case MMKV_EINVAL: return "invalid argument";
    default: return rc < 0 && rc > -4096 ? strerror(-rc) : "unknown error";
    }
}
