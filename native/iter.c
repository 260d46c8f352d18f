/* iter.c - iteration: batches of keys (or keys and values) from the slots of a table of a
 * pinned file.  The Python side (mmkv/_store.py) resumes after a rebuild or a compaction.
 *
 * Iteration.  Keys never move within a table, so a slot scan meets a key present for the
 * whole scan exactly once.  A rebuild publishes a new table and freezes the old one; a
 * compaction retires the whole file.  The iterator pins the file it started on, so the old
 * table stays readable; the caller collects the keys of the slots it already passed in the
 * frozen table, goes on in the new one from its start and skips those.  Each yielded slot
 * is checked: record bounds, CRC, and that a lookup of its key lands on that very slot (a
 * damaged table may list a key twice).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
    mmkv_entry_fn fn;            /* instead of buf: the destination of each entry */
    void *fn_ctx;
    int with_values;
};

/* Would a lookup of r's key land on slot i?  1 yes, 0 no (a damaged table holds the key
 * twice), or an error.  Keeps iteration to keys get() can see.  The probe starts from the
 * record's own hash (covered by its CRC) instead of hashing the key again: that would cost
 * a SipHash per key, and only a record forged with a wrong hash (which get() then misses)
 * gets past it. */
static int iter_reachable(mmkv_store *s, struct view *v, const struct table *t, uint64_t i,
                          const struct fmt_record *r)
{
    struct probe p;
    int rc = table_probe(s, v, t, r->hash, (const char *)(r + 1), r->klen, 0, &p);
    return rc < 0 ? rc : p.found == i;
}

/* Slots are scanned in order but their records lie anywhere in the log: ask for the record
 * of a slot ITER_AHEAD ahead while this one is handled, so the memory waits overlap.  A
 * prefetch never faults; the bounds check only keeps it to the mapping. */
#define ITER_AHEAD 8

static inline void iter_prefetch(const struct view *v, const struct table *t, uint64_t j,
                                 uint64_t end)
{
    if (j >= end)
        return;
    uint64_t w = atomic_load_explicit(&t->slots[j], memory_order_relaxed);
    uint64_t off = fmt_slot_off(w);
    if (w > FMT_TOMB && off + 64 <= v->len)
        __builtin_prefetch(v->base + off);
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
        iter_prefetch(&v, &t, i + ITER_AHEAD, end);
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
        if (c->fn) {
            char *kd, *vd = NULL;
            size_t vlen = c->with_values ? r->vlen : 0;
            if (c->fn(c->fn_ctx, r->klen, vlen, &kd, c->with_values ? &vd : NULL) < 0)
                return -ENOMEM;
            memcpy(kd, r + 1, r->klen);
            if (vd)
                memcpy(vd, (const char *)(r + 1) + r->klen, vlen);
            n++;
            continue;
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
struct iter_moved_ctx {
    mmkv_store *s;
    struct gen *g;
    uint64_t *desc;
};

static int64_t iter_gen_moved_guarded(void *arg)
{
    struct iter_moved_ctx *c = arg;
    struct view v;
    store_view(c->g, &v);
    int moved = store_moved(c->s, c->g,
                            atomic_load_explicit(&view_hdr(&v)->state, memory_order_acquire));
    if (!moved)
        *c->desc = iter_desc(c->g);
    return moved;
}

static int iter_gen_moved(mmkv_store *s, struct gen *g, uint64_t *desc)
{
    struct iter_moved_ctx c = {s, g, desc};
    return (int)guard_run(iter_gen_moved_guarded, &c);
}

struct iter_scan_call {
    mmkv_store *s;
    struct iter_ctx *c;
};

static int64_t iter_scan_guarded(void *arg)
{
    struct iter_scan_call *call = arg;
    return iter_scan_gen(call->s, call->c);
}

/* One batch, counted in the handle's calls and guarded. */
static int iter_scan_call(mmkv_iter *it, struct iter_ctx *c)
{
    int rc = iter_enter(it->s);
    if (rc < 0)
        return rc;
    struct iter_scan_call call = {it->s, c};
    rc = (int)guard_run(iter_scan_guarded, &call);
    atomic_fetch_sub(&it->s->inflight, 1);
    return rc;
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
    guard_reassert();
    /* start on the file the path names now: a handle that has not moved since another
     * process compacted must move first, or it would iterate a retired file */
    for (int tries = 0;; tries++) {
        it->g = store_gen_pin(s);
        if (!it->g) {
            free(it);
            it = NULL;
            rc = MMKV_ECLOSED;
            break;
        }
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
    struct iter_ctx c = {it->g, desc, pos, end, buf, cap, lens, vlens, max_keys, n, need, current,
                         NULL, NULL, 0};
    return iter_scan_call(it, &c);
}

int mmkv_iter_scan_cb(mmkv_iter *it, uint64_t desc, uint64_t *pos, uint64_t end,
                      size_t max_keys, int with_values, mmkv_entry_fn fn, void *ctx, size_t *n,
                      uint64_t *current)
{
    size_t need = 0;
    struct iter_ctx c = {it->g, desc, pos, end, NULL, 0, NULL, NULL, max_keys, n, &need,
                         current, fn, ctx, with_values};
    return iter_scan_call(it, &c);
}

int mmkv_iter_repin(mmkv_iter *it, uint64_t *desc)
{
    int rc = iter_enter(it->s);
    if (rc < 0)
        return rc;
    mmkv_store *s = it->s;
    if (atomic_load(&s->gen) == it->g)
        rc = store_switch(s, it->g);
    struct gen *g = rc == 0 ? store_gen_pin(s) : NULL;
    if (rc == 0 && !g)
        rc = MMKV_ECLOSED;
    if (g) {
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
