/* store.c - the exported functions: validate arguments, guard the mapping, take the lock,
 * call the table and commit layers.  Also opening (first-opener detection, lock
 * reinitialisation, recovery), the mapping and its growth, and closing.
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

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct gen *store_gen_new(mmkv_store *s, int fd);
static int store_map_all(struct gen *g, uint64_t size);
static mmkv_store *registry;

/* ---- the mapping and the gens ---- */

void store_view(struct gen *g, struct view *v)
{
    struct mapping *m = atomic_load_explicit(&g->map, memory_order_acquire);
    v->base = m->base;
    v->len = atomic_load_explicit(&m->len, memory_order_acquire);
    v->g = g;
}

static struct mapping *store_new_mapping(struct gen *g, uint64_t size)
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

static void store_gen_release(struct gen *g)
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
static int store_moved(mmkv_store *s, struct gen *g, uint64_t state)
{
    if (state == FMT_RETIRED)
        return 1;
    if (state != FMT_RETIRING)
        return 0;
    uint64_t dev, ino;
    return os_vt.stat_ino(s->path, &dev, &ino) == 0 && (dev != g->dev || ino != g->ino);
}

/* Move the handle from gen old to the file now at the path. */
static int store_switch(mmkv_store *s, struct gen *old)
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
        return MMKV_EFAULT;
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
            compact_run(s, &v);   /* the write is done; a failed compaction changes nothing */
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

/* Give the child its own open file description, with its own read OFD lock.  The one it
 * inherited is shared with the parent: a lock change on it (the last-closer test takes the
 * write lock) would act for both, and it would outlive the parent's close. */
static void store_fork_reopen(struct gen *g)
{
    if (g->fd < 0 || atomic_load(&g->released))
        return;
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", g->fd);
    int fd = os_vt.open(proc, g->readonly ? O_RDONLY : O_RDWR, 0);
    if (fd < 0)
        return;
    if (os_ofd_lock(fd, F_RDLCK, 0, 1) == 0 && dup3(fd, g->fd, O_CLOEXEC) >= 0) {
        os_vt.close(fd);
        return;
    }
    os_vt.close(fd);
}

void mmkv_after_fork_child(void)
{
    /* The child has its own thread ids: it owns no robust mutex of the parent.  Reset the
     * recursion bookkeeping of every handle it inherited, and the process-local mutexes,
     * which a parent thread may have held at the fork. */
    pthread_mutex_init(&registry_mu, NULL);
    for (mmkv_store *s = registry; s; s = s->next_open) {
        atomic_store(&s->user_locks, 0);
        pthread_mutex_init(&s->switch_mu, NULL);
        for (struct gen *g = s->gens; g; g = g->next) {
            pthread_mutex_init(&g->map_mu, NULL);
            store_fork_reopen(g);
        }
        s->pid = getpid();
    }
}

/* ---- sync and stats ---- */

static int64_t op_sync(mmkv_store *s, struct view *v, void *arg)
{
    (void)arg;
    if (s->shm)
        return 0;
    if (s->readonly)
        return os_vt.fdatasync(v->g->fd);
    /* phase 1 makes the log durable up to t; phase 2 records t as synced_tail */
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
    return 0;
}

int mmkv_stats(mmkv_store *s, struct mmkv_stats *out)
{
    return (int)store_call(s, op_stats, out, 0);
}

/* ---- iteration ---- */

struct mmkv_iter {
    mmkv_store *s;
    struct gen *g;               /* pinned */
};

struct iter_ctx {
    struct gen *g;
    uint64_t desc, *pos, end;
    char *buf;
    size_t cap;
    uint32_t *lens;
    uint32_t *vlens;             /* items: value lengths (values follow their keys) */
    size_t max_keys, *n, *need;
    uint64_t *current;
};

/* Would a lookup of r's key land on slot i?  1 yes, 0 no (a damaged table holds the key
 * twice, or under the wrong hash), or an error.  Keeps iteration to keys get() can see. */
static int iter_reachable(mmkv_store *s, struct view *v, const struct table *t, uint64_t i,
                          const struct fmt_record *r)
{
    uint64_t hash = fmt_siphash13(v->g->sipkey, r + 1, r->klen);
    if (hash != r->hash)
        return 0;
    struct probe p;
    int rc = table_probe(s, v, t, hash, (const char *)(r + 1), r->klen, 0, &p);
    return rc < 0 ? rc : p.found == i;
}

static int iter_scan_gen(mmkv_store *s, struct iter_ctx *c)
{
    struct view v;
    struct table t;
    store_view(c->g, &v);
    struct fmt_header *h = view_hdr(&v);
    *c->n = 0;
    int moved = atomic_load(&s->gen) != c->g ||
                store_moved(s, c->g, atomic_load_explicit(&h->state, memory_order_acquire));
    *c->current = moved ? 0 : atomic_load_explicit(&h->table_desc, memory_order_acquire);
    int rc = table_get(s, &v, c->desc, &t);
    if (rc < 0)
        return rc;
    uint64_t end = (c->end == 0 || c->end > t.cap) ? t.cap : c->end, i = *c->pos;
    size_t used = 0, n = 0;
    for (; i < end && n < c->max_keys; i++) {
        uint64_t w = atomic_load_explicit(&t.slots[i], memory_order_acquire);
        if (w <= FMT_TOMB)
            continue;
        const struct fmt_record *r;
        if ((rc = table_record(s, &v, w, &r)) < 0)
            return rc;
        if (r->type != FMT_PUT || fmt_record_crc(r) != r->crc)
            return MMKV_ECORRUPT;
        if ((rc = iter_reachable(s, &v, &t, i, r)) <= 0) {
            if (rc < 0)
                return rc;
            continue;   /* a damaged table lists this key elsewhere too: yield it once */
        }
        size_t len = r->klen + (c->vlens ? r->vlen : 0);
        if (used + len > c->cap) {
            if (n == 0) {
                *c->need = len;
                return MMKV_EBUFSIZE;
            }
            break;
        }
        memcpy(c->buf + used, r + 1, len);
        if (c->vlens)
            c->vlens[n] = r->vlen;
        c->lens[n++] = r->klen;
        used += len;
    }
    *c->pos = i;
    *c->n = n;
    return i >= end ? 1 : 0;
}

static int iter_enter(mmkv_store *s)
{
    atomic_fetch_add(&s->inflight, 1);
    if (atomic_load(&s->closed)) {
        atomic_fetch_sub(&s->inflight, 1);
        return MMKV_ECLOSED;
    }
    return 0;
}

static uint64_t iter_desc(struct gen *g)
{
    struct view v;
    store_view(g, &v);
    return atomic_load_explicit(&view_hdr(&v)->table_desc, memory_order_acquire);
}

/* 1 if the handle must move off g (the path names another file), else 0 with *desc set;
 * MMKV_EFAULT if the mapping faulted. */
static int iter_gen_moved(mmkv_store *s, struct gen *g, uint64_t *desc)
{
    sigjmp_buf env;
    if (sigsetjmp(env, 0)) {
        guard_disarm();
        return MMKV_EFAULT;
    }
    guard_arm(&env);
    struct view v;
    store_view(g, &v);
    int moved = store_moved(s, g, atomic_load_explicit(&view_hdr(&v)->state, memory_order_acquire));
    if (!moved)
        *desc = iter_desc(g);
    guard_disarm();
    return moved;
}

int mmkv_iter_begin(mmkv_store *s, mmkv_iter **out, uint64_t *desc)
{
    *out = NULL;
    if (!s)
        return MMKV_ECLOSED;
    mmkv_iter *it = calloc(1, sizeof(*it));
    if (!it)
        return -ENOMEM;
    int rc = iter_enter(s);
    if (rc < 0) {
        free(it);
        return rc;
    }
    it->s = s;
    /* start on the file the path names now: a handle that has not moved since another
     * process compacted must move first, or it would iterate a retired file */
    for (int tries = 0;; tries++) {
        it->g = store_gen_pin(s);
        int moved = iter_gen_moved(s, it->g, desc);
        rc = moved < 0 ? moved : 0;
        if (moved == 1 && tries < 100)
            rc = store_switch(s, it->g);
        if (moved == 0)
            break;
        store_gen_unpin(it->g);
        if (rc < 0 || tries >= 100) {
            free(it);
            it = NULL;
            rc = rc < 0 ? rc : MMKV_EFAULT;
            break;
        }
    }
    atomic_fetch_sub(&s->inflight, 1);
    *out = it;
    return rc;
}

int mmkv_iter_scan(mmkv_iter *it, uint64_t desc, uint64_t *pos, uint64_t end, char *buf,
                   size_t cap, uint32_t *lens, size_t max_keys, size_t *n, uint64_t *current,
                   size_t *need)
{
    return mmkv_iter_scan_items(it, desc, pos, end, buf, cap, lens, NULL, max_keys, n, current,
                                need);
}

int mmkv_iter_scan_items(mmkv_iter *it, uint64_t desc, uint64_t *pos, uint64_t end, char *buf,
                         size_t cap, uint32_t *lens, uint32_t *vlens, size_t max_keys,
                         size_t *n, uint64_t *current, size_t *need)
{
    struct iter_ctx c = {it->g, desc, pos, end, buf, cap, lens, vlens, max_keys, n, need, current};
    int rc = iter_enter(it->s);
    if (rc < 0)
        return rc;
    sigjmp_buf env;
    if (sigsetjmp(env, 0) == 0) {
        guard_arm(&env);
        rc = iter_scan_gen(it->s, &c);
    } else {
        rc = MMKV_EFAULT;
    }
    guard_disarm();
    atomic_fetch_sub(&it->s->inflight, 1);
    return rc;
}

int mmkv_iter_repin(mmkv_iter *it, uint64_t *desc)
{
    int rc = iter_enter(it->s);
    if (rc < 0)
        return rc;
    mmkv_store *s = it->s;
    if (atomic_load(&s->gen) == it->g)
        rc = store_switch(s, it->g);
    if (rc == 0) {
        struct gen *g = store_gen_pin(s);
        store_gen_unpin(it->g);
        it->g = g;
        *desc = iter_desc(g);
    }
    atomic_fetch_sub(&s->inflight, 1);
    return rc;
}

void mmkv_iter_end(mmkv_iter *it)
{
    if (!it)
        return;
    store_gen_unpin(it->g);
    free(it);
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
static int store_recover_alone(mmkv_store *s, struct view *v, const uint8_t boot[16],
                               int power_loss)
{
    struct gen *g = v->g;
    struct fmt_header *h = view_hdr(v);
    lock_init(g->lockpg, boot, g->dev, g->ino);
    int rc = 0;
    if (power_loss) {
        /* trust only the log; a grow whose size did not reach the disk is forgotten */
        if (atomic_load(&h->file_size) > v->len)
            atomic_store(&h->file_size, v->len);
        rc = recover_scan(s, v);
    } else {
        commit_recover(v);                /* a process crash: the page cache is intact */
    }
    if (rc < 0)
        return rc;
    if (atomic_load(&h->compact_tag) || atomic_load(&h->state) != FMT_ACTIVE)
        compact_resolve(s, v);
    memcpy(h->boot_id, boot, 16);
    atomic_store(&h->dirty, 1);
    return 0;
}

static int store_attach_locks(mmkv_store *s, struct view *v, int alone, int power_loss)
{
    uint8_t boot[16];
    os_boot_id(boot);
    if (alone)
        return store_recover_alone(s, v, boot, power_loss);
    /* Others have it open.  If none of them is a writer of this boot, the mutex may be
     * stale: reinitialise it under the init lock (byte 1), which every writer takes here. */
    struct gen *g = v->g;
    int rc = os_ofd_lock(g->fd, F_WRLCK, 1, 1);
    if (rc < 0)
        return rc;
    if (!lock_stamp_matches(g->lockpg, boot, g->dev, g->ino)) {
        lock_init(g->lockpg, boot, g->dev, g->ino);
        commit_recover(v);
    }
    os_ofd_lock(g->fd, F_UNLCK, 1, 0);
    return 0;
}

static int store_map_all(struct gen *g, uint64_t size)
{
    struct mapping *m = store_new_mapping(g, size);
    if (!m)
        return -ENOMEM;
    atomic_store(&g->map, m);
    if (!g->readonly) {
        g->lockpg = os_map(FMT_PAGE, g->fd, FMT_LOCK_OFF, 1);
        if (!g->lockpg)
            return -errno;
    }
    return 0;
}

static int store_attach_guarded(mmkv_store *s, struct gen *g, uint64_t size, int alone,
                                int power_loss)
{
    sigjmp_buf env;
    if (sigsetjmp(env, 0)) {
        guard_disarm();
        return MMKV_EFAULT;
    }
    guard_arm(&env);
    int rc = store_map_all(g, size);
    struct view v;
    if (rc == 0) {
        store_view(g, &v);
        if (!power_loss)   /* after a power loss only the log counts; checked after the scan */
            rc = store_validate_open(s, &v);
    }
    if (rc == 0 && !g->readonly)
        rc = store_attach_locks(s, &v, alone, power_loss);
    if (rc == 0 && !g->readonly)
        rc = store_validate_open(s, &v);
    guard_disarm();
    return rc;
}

/* A gen for a file that compaction is about to fill: mapped, lock page mapped. */
struct gen *store_gen_create(mmkv_store *s, int fd, uint64_t size)
{
    struct gen *g = store_gen_new(s, fd);
    if (!g)
        return NULL;
    uint64_t st_size;
    if (os_vt.fstat_size(fd, &st_size, &g->dev, &g->ino) < 0 || store_map_all(g, size) < 0) {
        g->fd = -1;
        store_gen_discard(g);
        return NULL;
    }
    struct gen *cur = atomic_load(&s->gen);
    memcpy(g->sipkey, cur->sipkey, 16);
    g->max_klen = cur->max_klen;
    g->max_vlen = cur->max_vlen;
    return g;
}

static struct gen *store_gen_new(mmkv_store *s, int fd)
{
    struct gen *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->fd = fd;
    g->readonly = s->readonly;
    atomic_store(&g->refs, 1);
    pthread_mutex_init(&g->map_mu, NULL);
    return g;
}

void store_gen_discard(struct gen *g)
{
    atomic_store(&g->released, 1);
    store_gen_release(g);
    free(g);
}

/* Was the machine restarted while the file was open (dirty, another boot)?  Then the page
 * cache may have lost writes that had not been synced: a possible power loss. */
static int store_power_lost(const mmkv_store *s, const struct fmt_header *h)
{
    uint8_t boot[16];
    os_boot_id(boot);
    return !s->shm && atomic_load(&((struct fmt_header *)h)->dirty) && memcmp(h->boot_id, boot, 16) != 0;
}

/* Liveness: every handle holds a read OFD lock on byte 0 for its life.  A writer that can
 * take the write lock on byte 0 is alone; it initialises or recovers, then downgrades.
 * Others wait on the read lock until that is done.  On success *out owns fd; on failure
 * fd is closed. */
static int store_attach(mmkv_store *s, int fd, int flag, const struct mmkv_options *opt,
                        struct gen **out)
{
    struct gen *g = store_gen_new(s, fd);
    if (!g) {
        os_vt.close(fd);
        return -ENOMEM;
    }
    int alone = 0, rc = 0;
    if (!s->readonly) {
        rc = os_ofd_lock(fd, F_WRLCK, 0, 0);
        alone = rc == 0;
        rc = rc == -EAGAIN ? 0 : rc;
    }
    if (rc == 0 && !alone)
        rc = os_ofd_lock(fd, F_RDLCK, 0, 1);
    uint64_t size = 0;
    if (rc == 0)
        rc = os_vt.fstat_size(fd, &size, &g->dev, &g->ino);
    if (rc == 0 && size == 0 && alone && flag == MMKV_OPEN_CREATE) {
        rc = store_format(fd, opt);
        if (rc == 0)
            rc = os_vt.fstat_size(fd, &size, &g->dev, &g->ino);
    }
    struct fmt_header h;
    if (rc == 0)
        rc = store_read_header(fd, &h, size);
    /* A writer grows the file before it publishes the new file_size, so the size measured
     * after reading the header is at least what that header says, unless the file was
     * really cut short. */
    if (rc == 0)
        rc = os_vt.fstat_size(fd, &size, &g->dev, &g->ino);
    uint64_t fsize = rc == 0 ? atomic_load(&h.file_size) : 0;
    int power_loss = rc == 0 && alone && !s->readonly && store_power_lost(s, &h);
    if (power_loss && fsize > size)
        fsize = size & ~(uint64_t)(FMT_PAGE - 1);   /* a grow that never reached the disk */
    if (rc == 0 && (fsize > size || fsize < FMT_ARENA_OFF + FMT_PAGE || (fsize & (FMT_PAGE - 1))))
        rc = MMKV_ECORRUPT;
    if (rc == 0) {
        memcpy(g->sipkey, h.sipkey, 16);
        g->max_klen = h.max_key_len;
        g->max_vlen = h.max_value_len;
        rc = store_attach_guarded(s, g, fsize, alone, power_loss);
    }
    if (rc == 0 && alone)
        rc = os_ofd_lock(fd, F_RDLCK, 0, 0);
    if (rc < 0) {
        store_gen_discard(g);
        return rc;
    }
    *out = g;
    return 0;
}

int store_gen_open(mmkv_store *s, int fd, int flag, struct gen **out)
{
    return store_attach(s, fd, flag, NULL, out);
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

static int store_resolve_path(const char *path, int shm, char *real, size_t cap)
{
    if (shm)
        return os_shm_path(path, real, cap);
    if (path[0] == 0)
        return -ENOENT;
    if (strlen(path) >= cap)
        return -ENAMETOOLONG;
    strcpy(real, path);
    return 0;
}

static void store_free_struct(mmkv_store *s)
{
    struct gen *g = s->gens;
    while (g) {
        struct gen *next = g->next;
        if (!atomic_exchange(&g->released, 1))
            store_gen_release(g);
        free(g);
        g = next;
    }
    free(s->path);
    free(s);
}

int mmkv_open(const char *path, int flag, unsigned mode, const struct mmkv_options *opt,
              mmkv_store **out)
{
    *out = NULL;
    int shm = (flag & MMKV_OPEN_SHM) != 0;
    flag &= 0xff;
    char real[PATH_MAX];
    int rc = store_check_options(flag, opt);
    if (rc == 0)
        rc = guard_install();
    if (rc == 0)
        rc = store_resolve_path(path, shm, real, sizeof(real));
    if (rc < 0)
        return rc;
    mmkv_store *s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(real))) {
        free(s);
        return -ENOMEM;
    }
    s->shm = shm;
    s->readonly = flag == MMKV_OPEN_READ;
    s->durable = opt ? opt->durable : 0;
    s->auto_compact = opt ? !opt->no_auto_compact : 1;
    s->pid = getpid();
    s->mode = mode;
    pthread_mutex_init(&s->switch_mu, NULL);
    if (flag == MMKV_OPEN_NEW) {
        rc = store_create_new(real, mode, opt);
        flag = MMKV_OPEN_WRITE;
    }
    int fd = -1;
    if (rc == 0) {
        int oflags = (s->readonly ? O_RDONLY : O_RDWR) | (flag == MMKV_OPEN_CREATE ? O_CREAT : 0);
        rc = fd = os_vt.open(real, oflags, mode);
    }
    struct gen *g = NULL;
    if (rc >= 0)
        rc = store_attach(s, fd, flag, opt, &g);
    if (rc < 0) {
        store_free_struct(s);
        return rc;
    }
    store_gen_install(s, g);
    store_registry_add(s);
    *out = s;
    return 0;
}

/* The last handle anywhere (it can take the write lock on byte 0) marks the file clean,
 * after a sync: a clean file needs no recovery scan even after a reboot. */
static void store_close_last(mmkv_store *s, struct gen *g)
{
    sigjmp_buf env;
    if (sigsetjmp(env, 0) == 0) {
        guard_arm(&env);
        if (g->fd >= 0 && !atomic_load(&g->released) && os_ofd_lock(g->fd, F_WRLCK, 0, 0) == 0) {
            struct view v;
            store_view(g, &v);
            struct fmt_header *h = view_hdr(&v);
            if (atomic_load(&h->state) == FMT_ACTIVE && (s->shm || os_vt.fdatasync(g->fd) == 0)) {
                atomic_store(&h->synced_tail, atomic_load(&h->tail));
                atomic_store(&h->dirty, 0);
                if (!s->shm)
                    os_vt.fdatasync(g->fd);
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
        store_close_last(s, atomic_load(&s->gen));
    for (struct gen *g = s->gens; g; g = g->next)
        if (!atomic_exchange(&g->released, 1))
            store_gen_release(g);
    return 0;
}

void mmkv_free(mmkv_store *s)
{
    if (!s)
        return;
    if (mmkv_close(s) == MMKV_EBUSY)
        return;   /* the lock page must stay mapped while the mutex is held: leak instead */
    store_free_struct(s);
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
    default: return rc < 0 && rc > -4096 ? strerror(-rc) : "unknown error";
    }
}
