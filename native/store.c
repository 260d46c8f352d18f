/* store.c - the exported mapping operations: validate arguments, guard the mapping, take
 * the lock, call the table and commit layers.  Also the mapping and its growth, and the gens
 * a handle moves through.  Opening and closing are in open.c, iteration in iter.c.
 *
 * Growth and remapping.  Each handle reserves a large range of address space once and maps
 * the file at its start; when the file grows (header.file_size, published by the writer
 * after fallocate) a handle maps the new part in place (MAP_FIXED inside the reservation),
 * so addresses never move under other threads.  A file that outgrows the reservation gets a
 * new one; the old one stays mapped as long as its gen, so pointers taken from it stay
 * valid (it maps the same file pages).  Readers extend lazily, only when a slot points past
 * their mapping; writers extend before writing.
 *
 * Files and gens.  A handle reaches its file through a gen (internal.h); compaction replaces
 * the file at the path and each handle moves to a new gen on its next call (store_switch).
 * Every call pins the gen it uses, so a call in flight finishes on the old mapping, which
 * goes when the last pin does.  Every entry point runs inside the SIGBUS guard and counts
 * itself in `inflight`, so close waits for calls in progress on other threads.
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


/* ---- the mapping and the gens ---- */

void store_view(struct gen *g, struct view *v)
{
    struct mapping *m = atomic_load_explicit(&g->map, memory_order_acquire);
    v->base = m->base;
    v->len = atomic_load_explicit(&m->len, memory_order_acquire);
    v->g = g;
}

struct mapping *store_new_mapping(struct gen *g, uint64_t size)
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
    if (!m->base || os_map_fixed(m->base, size, g->fd, 0, !g->readonly) < 0) {
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
    (void)s;
    if (need && need <= v->len)
        return 0;
    struct gen *g = v->g;
    uint64_t target = atomic_load_explicit(&view_hdr(v)->file_size, memory_order_acquire);
    if (need > target)
        return MMKV_ECORRUPT;
    int rc = 0;
    pthread_mutex_lock(&g->map_mu);
    struct mapping *m = atomic_load(&g->map);
    uint64_t have = atomic_load(&m->len);
    if (target > have) {
        uint64_t size, dev, ino;
        rc = os_vt.fstat_size(g->fd, &size, &dev, &ino);
        if (rc == 0 && target > size)
            target = size & ~(uint64_t)(FMT_PAGE - 1);
        if (rc == 0 && need > target)
            rc = MMKV_EFAULT;
    }
    if (rc == 0 && target > have) {
        if (target <= m->reserved_len) {
            rc = os_map_fixed(m->base + have, target - have, g->fd, have, !g->readonly);
            if (rc == 0)
                atomic_store_explicit(&m->len, target, memory_order_release);
        } else {
            struct mapping *n = store_new_mapping(g, target);
            if (!n) {
                rc = -ENOMEM;
            } else {
                n->older = m;
                atomic_store_explicit(&g->map, n, memory_order_release);
            }
        }
    }
    pthread_mutex_unlock(&g->map_mu);
    store_view(g, v);
    if (rc == 0 && need > v->len)
        rc = MMKV_EFAULT;
    return rc;
}

void store_gen_release(struct gen *g)
{
    struct mapping *m = atomic_load(&g->map);
    while (m) {
        struct mapping *older = m->older;
        os_unmap(m->base, m->reserved_len);
        free(m);
        m = older;
    }
    atomic_store(&g->map, NULL);
    if (g->lockpg)
        os_unmap(g->lockpg, FMT_PAGE);
    g->lockpg = NULL;
    if (g->fd >= 0)
        os_vt.close(g->fd);
    g->fd = -1;
}

/* Pin the handle's current gen.  Gen structs live until mmkv_free, so loading a gen that
 * is being retired and pinning it briefly is harmless; its resources go with the last pin. */
struct gen *store_gen_pin(mmkv_store *s)
{
    for (;;) {
        struct gen *g = atomic_load_explicit(&s->gen, memory_order_acquire);
        atomic_fetch_add(&g->refs, 1);
        if (atomic_load(&s->gen) == g)
            return g;
        store_gen_unpin(g);
    }
}

void store_gen_unpin(struct gen *g)
{
    if (atomic_fetch_sub(&g->refs, 1) == 1 && !atomic_exchange(&g->released, 1))
        store_gen_release(g);
}

/* Make g the handle's current gen (it starts with the one "current" reference). */
void store_gen_install(mmkv_store *s, struct gen *g)
{
    pthread_mutex_lock(&s->switch_mu);
    g->next = s->gens;
    s->gens = g;
    struct gen *old = atomic_exchange(&s->gen, g);
    pthread_mutex_unlock(&s->switch_mu);
    if (old)
        store_gen_unpin(old);
}

/* ---- guarded calls ---- */

typedef int64_t (*store_op)(mmkv_store *s, struct view *v, void *ctx);

/* After a fault while holding the lock: undo or finish the write, release the lock.  Each
 * step is guarded again, since the mapping may be gone entirely. */
static void store_fault_cleanup(struct gen *g)
{
    sigjmp_buf env;
    struct view v;
    if (sigsetjmp(env, 0) == 0) {
        guard_arm(&env);
        store_view(g, &v);
        commit_recover(&v);
    }
    guard_disarm();
    if (sigsetjmp(env, 0) == 0) {
        guard_arm(&env);
        v.g = g;
        lock_release(&v);
    }
    guard_disarm();
}

/* durable=True, under the lock after a write: one fdatasync.  The write's own record is
 * durable when it returns; synced_tail (which only serves to detect lost synced data after a
 * power loss) is advanced to what the previous durable write made durable, and reaches the
 * disk with this sync: it lags one write behind instead of costing a second sync. */
static int store_sync_locked(mmkv_store *s, struct view *v)
{
    if (s->shm)
        return 0;
    struct fmt_header *h = view_hdr(v);
    uint64_t t = atomic_load(&h->tail), mark = atomic_load(&h->sync_mark);
    if (mark <= t && atomic_load(&h->synced_tail) < mark)
        atomic_store(&h->synced_tail, mark);
    int rc = os_vt.fdatasync(v->g->fd);
    if (rc == 0)
        atomic_store(&h->sync_mark, t);
    return rc;
}

/* Has the store at the path moved to another file?  RETIRED says so; RETIRING (a
 * compaction between its rename and its last step) needs a look at the path. */
int store_moved(mmkv_store *s, struct gen *g, uint64_t state)
{
    if (state == FMT_RETIRED)
        return 1;
    if (state != FMT_RETIRING)
        return 0;
    uint64_t dev, ino;
    return os_vt.stat_ino(s->path, &dev, &ino) == 0 && (dev != g->dev || ino != g->ino);
}

/* Move the handle from gen old to the file now at the path. */
int store_switch(mmkv_store *s, struct gen *old)
{
    pthread_mutex_lock(&s->switch_mu);
    int moved = atomic_load(&s->gen) != old;
    pthread_mutex_unlock(&s->switch_mu);
    if (moved)
        return 0;
    int fd = os_vt.open(s->path, s->readonly ? O_RDONLY : O_RDWR, 0);
    if (fd < 0)
        return fd;
    uint64_t size, dev, ino;
    int rc = os_vt.fstat_size(fd, &size, &dev, &ino);
    if (rc == 0 && dev == old->dev && ino == old->ino)
        rc = MMKV_ECORRUPT;   /* retired, yet still the file at the path: damage */
    if (rc < 0) {
        os_vt.close(fd);
        return rc;
    }
    struct gen *g;
    rc = store_gen_open(s, fd, MMKV_OPEN_WRITE, &g);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->switch_mu);
    moved = atomic_load(&s->gen) != old;
    pthread_mutex_unlock(&s->switch_mu);
    if (moved) {                /* another thread switched first */
        store_gen_discard(g);
        return 0;
    }
    store_gen_install(s, g);
    return 0;
}

static int64_t store_guarded(mmkv_store *s, struct gen *g, store_op fn, void *ctx, int write,
                             int *again)
{
    sigjmp_buf env;
    volatile int locked = 0;
    if (sigsetjmp(env, 0)) {
        guard_disarm();
        if (locked)
            store_fault_cleanup(g);
        int frozen = write ? os_file_frozen(g->fd) : 0;   /* chattr +i, +a: say EPERM */
        return frozen ? frozen : MMKV_EFAULT;
    }
    guard_arm(&env);
    struct view v;
    store_view(g, &v);
    int64_t rc = 0;
    uint64_t state = atomic_load_explicit(&view_hdr(&v)->state, memory_order_acquire);
    if (state != FMT_ACTIVE && store_moved(s, g, state)) {
        *again = 1;
        goto out;
    }
    if (write) {
        rc = lock_acquire(s, &v);
        if (rc < 0)
            goto out;
        locked = 1;
        atomic_signal_fence(memory_order_seq_cst);
        struct fmt_header *h = view_hdr(&v);
        if (atomic_load(&h->state) != FMT_ACTIVE || atomic_load(&h->compact_tag) != 0)
            rc = compact_resolve(s, &v);
        if (rc == 1) {
            *again = 1;
            rc = 0;
        }
    }
    if (!*again && rc >= 0)
        rc = fn(s, &v, ctx);
    if (write) {
        if (rc >= 0 && !*again && s->durable) {
            int src = store_sync_locked(s, &v);
            if (src < 0)
                rc = src;
        }
        if (rc >= 0 && !*again && s->auto_compact && atomic_load(&s->user_locks) == 0 &&
            compact_wanted(&v))
            compact_auto(s, &v);  /* the write is done; a failed compaction changes nothing */
        lock_release(&v);
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
    else {
        for (int tries = 0;; tries++) {
            struct gen *g = store_gen_pin(s);
            int again = 0;
            rc = store_guarded(s, g, fn, ctx, write, &again);
            if (again)
                rc = tries < 100 ? store_switch(s, g) : MMKV_ECORRUPT;
            store_gen_unpin(g);
            if (!again || rc < 0)
                break;
        }
    }
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
    struct gen *g = atomic_load(&s->gen);
    return klen > g->max_klen ? MMKV_ETOOBIG : 0;
}

static uint64_t store_max_vlen(mmkv_store *s)
{
    return atomic_load(&s->gen)->max_vlen;
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
        return MMKV_ENOTFOUND;
    struct kv_ctx c = {.key = key, .klen = klen, .buf = buf, .cap = cap};
    return store_call(s, op_get, &c, 0);
}

int mmkv_contains(mmkv_store *s, const char *key, size_t klen)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0)
        return atomic_load(&s->closed) ? MMKV_ECLOSED : 0;
    struct kv_ctx c = {.key = key, .klen = klen, .buf = NULL};
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
        return atomic_load(&s->closed) ? MMKV_ECLOSED : MMKV_ETOOBIG;
    struct kv_ctx c = {.key = key, .klen = klen, .val = val, .vlen = vlen};
    return (int)store_call(s, op_put, &c, 1);
}

int mmkv_delete(mmkv_store *s, const char *key, size_t klen)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0)
        return atomic_load(&s->closed) ? MMKV_ECLOSED : (s->readonly ? MMKV_ERDONLY : MMKV_ENOTFOUND);
    struct kv_ctx c = {.key = key, .klen = klen};
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
    return store_call(s, op_pop, &c, 1);
}

int64_t mmkv_setdefault(mmkv_store *s, const char *key, size_t klen, const char *dflt,
                        size_t dlen, char *buf, size_t cap)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0 || dlen > store_max_vlen(s))
        return atomic_load(&s->closed) ? MMKV_ECLOSED : MMKV_ETOOBIG;
    struct kv_ctx c = {.key = key, .klen = klen, .val = dflt, .vlen = dlen, .buf = buf, .cap = cap};
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
    return (int)store_call(s, op_incr, &c, 1);
}

int mmkv_cas(mmkv_store *s, const char *key, size_t klen, int expected_absent,
             const char *expected, size_t elen, int new_delete, const char *nval, size_t nlen)
{
    if (!s)
        return MMKV_ECLOSED;
    if (store_check_key(s, klen) < 0 || (!new_delete && nlen > store_max_vlen(s)))
        return atomic_load(&s->closed) ? MMKV_ECLOSED : MMKV_ETOOBIG;
    struct kv_ctx c = {.key = key, .klen = klen, .val = nval, .vlen = nlen, .expected = expected,
                       .elen = elen, .flag_a = expected_absent, .flag_b = new_delete};
    return (int)store_call(s, op_cas, &c, 1);
}

/* ---- the user-held lock ---- */

static int64_t op_lock(mmkv_store *s, struct view *v, void *arg)
{
    (void)arg;
    for (int tries = 0; tries < 100; tries++) {
        int rc = lock_acquire(s, v);
        if (rc < 0)
            return rc;
        struct fmt_header *h = view_hdr(v);
        rc = 0;
        if (atomic_load(&h->state) != FMT_ACTIVE || atomic_load(&h->compact_tag) != 0)
            rc = compact_resolve(s, v);
        if (rc == 0) {
            atomic_fetch_add(&s->user_locks, 1);
            return 0;
        }
        lock_release(v);
        if (rc < 0)
            return rc;
        struct gen *old = v->g;
        if ((rc = store_switch(s, old)) < 0)
            return rc;
        /* continue on the new file; the caller's pin keeps old alive, pin the new one */
        struct gen *g = store_gen_pin(s);
        store_view(g, v);
        store_gen_unpin(g);   /* the current reference keeps it mapped while current */
    }
    return MMKV_ECORRUPT;
}

static int64_t op_unlock(mmkv_store *s, struct view *v, void *arg)
{
    (void)arg;
    if (atomic_load(&s->user_locks) <= 0)
        return MMKV_ENOTLOCKED;
    if (pthread_mutex_unlock(&v->g->lockpg->mutex) != 0)
        return MMKV_ENOTLOCKED;
    atomic_fetch_sub(&s->user_locks, 1);
    return 0;
}

static int64_t store_call_plain(mmkv_store *s, store_op fn, void *ctx)
{
    /* lock and unlock must act on the current file without the write-path's switching */
    if (!s)
        return MMKV_ECLOSED;
    atomic_fetch_add(&s->inflight, 1);
    int64_t rc = MMKV_ECLOSED;
    if (!atomic_load(&s->closed)) {
        struct gen *g = store_gen_pin(s);
        sigjmp_buf env;
        if (sigsetjmp(env, 0) == 0) {
            guard_arm(&env);
            struct view v;
            store_view(g, &v);
            rc = fn(s, &v, ctx);
        } else {
            rc = MMKV_EFAULT;
        }
        guard_disarm();
        store_gen_unpin(g);
    }
    atomic_fetch_sub(&s->inflight, 1);
    return rc;
}

int mmkv_lock(mmkv_store *s)
{
    if (s && !atomic_load(&s->closed) && s->readonly)
        return MMKV_ERDONLY;
    return (int)store_call_plain(s, op_lock, NULL);
}

int mmkv_unlock(mmkv_store *s)
{
    return (int)store_call_plain(s, op_unlock, NULL);
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
    return (int)store_call(s, op_stats, out, 0);
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
    return recover_check(s, v, c->report, c->cap, c->out);
}

int mmkv_check(mmkv_store *s, char *report, size_t cap, struct mmkv_check_report *out)
{
    struct check_ctx c = {report, cap, out};
    /* writers hold the lock during the check so that the log and the table hold still */
    return (int)store_call(s, op_check, &c, s && !s->readonly);
}

static int64_t op_verify(mmkv_store *s, struct view *v, void *arg)
{
    struct check_ctx *c = arg;
    return recover_verify(s, v, c->report, c->cap, c->out);
}

int mmkv_verify(mmkv_store *s, char *report, size_t cap, struct mmkv_check_report *out)
{
    struct check_ctx c = {report, cap, out};
    return (int)store_call(s, op_verify, &c, s && !s->readonly);
}

static int64_t op_compact(mmkv_store *s, struct view *v, void *arg)
{
    (void)arg;
    return compact_run(s, v);
}

int mmkv_compact(mmkv_store *s)
{
    if (s && atomic_load(&s->user_locks) > 0 && !atomic_load(&s->closed))
        return MMKV_EBUSY;
    return (int)store_call(s, op_compact, NULL, 1);
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
    case MMKV_EFULL: return "the hash table reached its maximum capacity";
    case MMKV_ENOTLOCKED: return "the lock is not held by this thread through this handle";
    case MMKV_EINVAL: return "invalid argument";
    case MMKV_ELINKED: return "the store's file has more than one hard link; compaction would replace only one of its names";
    default: return rc < 0 && rc > -4096 ? strerror(-rc) : "unknown error";
    }
}
