/* batch.c - get_many, set_many and delete_many: one call into the core for many keys.
 *
 * Snapshot reads.  Every write makes header.snap advance after it publishes (+2), and a
 * batch makes it odd before its first slot and even after its last (commit.c).  get_many
 * loads snap, reads every key, loads snap again and keeps the result only when snap was even
 * and unchanged: then no write published anything in between, so the values are the store
 * as of one moment.  After BATCH_TRIES failed passes it takes the writer lock for one pass
 * (a read-only handle has no lock: it keeps retrying, then gives up with -EAGAIN).
 *
 * Batched writes.  set_many and delete_many run under the lock: keys are hashed and
 * de-duplicated (set_many: the last occurrence wins, as dict.update; delete_many: the first
 * counts), the table is made big enough for every insert at once, each key is probed and
 * given its slot (new keys never share one), and commit_batch appends the records and
 * their plan under one intent.  A crash leaves all of the batch or none of it, and a
 * power-loss scan applies a batch only when all its records survived (recover.c).
 * Arguments are checked against the store's limits before anything is written.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_TRIES 8
#define BATCH_READONLY_TRIES 100000

struct batch_ctx {
    const char *data;            /* keys, or key/value pairs (set), packed */
    const uint32_t *klens;
    const uint32_t *vlens;       /* set_many */
    size_t n;
    char *buf;                   /* get_many: values, packed, in key order */
    size_t cap;
    int64_t *out;                /* get_many: value lengths, -1 for a missing key */
    size_t *need;
};

/* ---- get_many ---- */

/* Look key up in the current table (re-probing if a rebuild swapped it meanwhile): 1 and
 * *out when present, 0 when absent, or an error. */
static int batch_lookup(mmkv_store *s, struct view *v, const char *key, uint32_t klen,
                        uint64_t hash, const struct fmt_record **out)
{
    for (;;) {
        struct fmt_header *h = view_hdr(v);
        uint64_t d1 = atomic_load_explicit(&h->table_desc, memory_order_acquire);
        struct table t;
        struct probe p;
        int rc = table_get(s, v, d1, &t);
        if (rc == 0)
            rc = table_probe(s, v, &t, hash, key, klen, 0, &p);
        if (rc < 0)
            return rc;
        atomic_thread_fence(memory_order_acquire);
        h = view_hdr(v);
        if (atomic_load_explicit(&h->table_desc, memory_order_relaxed) != d1)
            continue;
        *out = p.rec;
        return p.found != UINT64_MAX;
    }
}

#define BATCH_GROUP 32

/* Hash the next keys of a group and ask for their home slots, so that the probes of the
 * group find them in the cache (the waits of BATCH_GROUP random reads overlap).  A prefetch
 * never faults; the descriptor is re-read by each lookup anyway. */
static void batch_hash_group(struct view *v, const struct batch_ctx *c, const char *key,
                             size_t i, uint64_t *hashes, size_t count)
{
    uint64_t desc = atomic_load_explicit(&view_hdr(v)->table_desc, memory_order_acquire);
    uint64_t slots = fmt_desc_off(desc) + FMT_TABLE_SLOTS_OFF;
    uint64_t mask = fmt_desc_sane(desc) ? (1ull << fmt_desc_lg(desc)) - 1 : 0;
    for (size_t j = 0; j < count; key += c->klens[i + j], j++) {
        hashes[j] = fmt_siphash13(v->g->sipkey, key, c->klens[i + j]);
        uint64_t at = slots + (hashes[j] & mask) * 8;
        if (mask && at + 8 <= v->len)
            __builtin_prefetch(v->base + at);
    }
    /* then the records the home slots name (most keys sit in their home slot) */
    for (size_t j = 0; mask && j < count; j++) {
        uint64_t at = slots + (hashes[j] & mask) * 8;
        if (at + 8 > v->len)
            continue;
        uint64_t w = atomic_load_explicit((_Atomic uint64_t *)(v->base + at), memory_order_relaxed);
        uint64_t off = fmt_slot_off(w);
        if (w > FMT_TOMB && off + 64 <= v->len)
            __builtin_prefetch(v->base + off);
    }
}

/* One pass over every key: values copied while they fit; MMKV_EBUFSIZE with *need when
 * they do not all fit. */
static int batch_read_pass(mmkv_store *s, struct view *v, struct batch_ctx *c)
{
    const char *key = c->data;
    uint64_t total = 0, hashes[BATCH_GROUP];
    for (size_t i = 0; i < c->n; key += c->klens[i], i++) {
        const struct fmt_record *r = NULL;
        int rc = 0;
        c->out[i] = -1;
        if (i % BATCH_GROUP == 0)
            batch_hash_group(v, c, key, i, hashes,
                             c->n - i < BATCH_GROUP ? c->n - i : BATCH_GROUP);
        if (c->klens[i] <= v->g->max_klen)
            rc = batch_lookup(s, v, key, c->klens[i], hashes[i % BATCH_GROUP], &r);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue;
        if (total + r->vlen <= c->cap) {
            memcpy(c->buf + total, (const char *)(r + 1) + r->klen, r->vlen);
            if (fmt_record_crc(r) != r->crc)
                return MMKV_ECORRUPT;
        }
        c->out[i] = r->vlen;
        total += r->vlen;
    }
    if (total > c->cap) {
        *c->need = total;
        return MMKV_EBUFSIZE;
    }
    return 0;
}

static int64_t op_get_many(mmkv_store *s, struct view *v, void *arg)
{
    struct batch_ctx *c = arg;
    int can_lock = !v->g->readonly && v->g->lockpg;
    int tries = can_lock ? BATCH_TRIES : BATCH_READONLY_TRIES;
    for (int i = 0; i < tries; i++) {
        struct fmt_header *h = view_hdr(v);
        uint64_t s1 = atomic_load_explicit(&h->snap, memory_order_acquire);
        if (s1 & 1)
            continue;
        int rc = batch_read_pass(s, v, c);
        atomic_thread_fence(memory_order_acquire);
        h = view_hdr(v);
        if (atomic_load_explicit(&h->snap, memory_order_relaxed) == s1)
            return rc;
    }
    if (!can_lock)
        return -EAGAIN;
    int rc = lock_acquire(s, v);   /* no writer publishes while we hold it */
    if (rc < 0)
        return rc;
    rc = batch_read_pass(s, v, c);
    lock_release(v);
    return rc;
}

int mmkv_get_many(mmkv_store *s, const char *keys, const uint32_t *klens, size_t n, char *buf,
                  size_t cap, int64_t *vlens, size_t *need)
{
    struct batch_ctx c = {.data = keys, .klens = klens, .n = n, .buf = buf, .cap = cap,
                          .out = vlens, .need = need};
    if (n == 0)
        return s && !atomic_load(&s->closed) ? 0 : MMKV_ECLOSED;
    return (int)call_read(s, op_get_many, &c);
}

/* ---- set_many and delete_many ---- */

/* De-duplication: a set of record indices keyed by key bytes (open addressing). */
struct batch_set {
    size_t *slots;               /* index + 1; 0 empty */
    uint64_t mask;
};

static int batch_set_init(struct batch_set *b, size_t n)
{
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n)
        cap <<= 1;
    b->mask = cap - 1;
    b->slots = calloc(cap, sizeof(size_t));
    return b->slots ? 0 : -ENOMEM;
}

/* Insert recs[i]; 0 if it was new, 1 if an equal key is already in. */
static int batch_set_add(struct batch_set *b, const struct batch_rec *recs, size_t i)
{
    const struct batch_rec *r = &recs[i];
    for (uint64_t j = r->hash & b->mask;; j = (j + 1) & b->mask) {
        size_t k = b->slots[j];
        if (k == 0) {
            b->slots[j] = i + 1;
            return 0;
        }
        const struct batch_rec *q = &recs[k - 1];
        if (q->hash == r->hash && q->klen == r->klen && memcmp(q->key, r->key, r->klen) == 0)
            return 1;
    }
}

/* Hash every key and keep one record per key: the last (set) or the first (delete), in
 * their original order.  Returns the number kept. */
static size_t batch_dedupe(struct batch_rec *recs, size_t n, const uint8_t sipkey[16], int last,
                           struct batch_set *seen)
{
    for (size_t i = 0; i < n; i++)
        recs[i].hash = fmt_siphash13(sipkey, recs[i].key, recs[i].klen);
    for (size_t k = 0; k < n; k++) {
        size_t i = last ? n - 1 - k : k;
        recs[i].type = batch_set_add(seen, recs, i) ? 0 : (last ? FMT_PUT : FMT_DEL);
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (recs[i].type)
            recs[m++] = recs[i];
    return m;
}

/* The first free slot (TOMB or EMPTY) on hash's probe path that no earlier key of the batch
 * took; `taken` is a set of slot indices + 1. */
static uint64_t batch_free_slot(const struct table *t, uint64_t hash, struct batch_set *taken)
{
    uint64_t mask = t->cap - 1, idx = hash & mask;
    for (uint64_t n = 0; n < t->cap; n++, idx = (idx + 1) & mask) {
        if (atomic_load_explicit(&t->slots[idx], memory_order_relaxed) > FMT_TOMB)
            continue;
        uint64_t j = (idx * 0x9E3779B97F4A7C15ull) & taken->mask;
        for (; taken->slots[j] && taken->slots[j] != idx + 1; j = (j + 1) & taken->mask)
            ;
        if (taken->slots[j])
            continue;
        taken->slots[j] = idx + 1;
        return idx;
    }
    return UINT64_MAX;
}

/* Probe each kept record and give it its slot; fills the counters as after the batch.
 * Delete records of absent keys are dropped; returns how many records remain. */
static int64_t batch_place(mmkv_store *s, struct view *v, struct batch_rec *recs, size_t m,
                           struct change *ch)
{
    struct fmt_header *h = view_hdr(v);
    struct table t;
    struct batch_set taken;
    int rc = table_get(s, v, atomic_load(&h->table_desc), &t);
    if (rc < 0 || (rc = batch_set_init(&taken, m)) < 0)
        return rc;
    ch->new_count = atomic_load(&h->count);
    ch->new_garbage = atomic_load(&h->garbage);
    ch->new_used = atomic_load(&h->table_used);
    size_t j = 0;
    for (size_t i = 0; i < m && rc == 0; i++) {
        struct probe p;
        struct batch_rec r = recs[i];
        if ((rc = table_probe(s, v, &t, r.hash, r.key, r.klen, 1, &p)) < 0)
            break;
        uint64_t idx = p.found;
        if (idx != UINT64_MAX) {
            ch->new_garbage += fmt_record_len(p.rec->klen, p.rec->vlen);
            ch->new_count -= r.type == FMT_DEL;
        } else if (r.type == FMT_DEL) {
            continue;
        } else if ((idx = batch_free_slot(&t, r.hash, &taken)) == UINT64_MAX) {
            rc = MMKV_ECORRUPT;   /* no free slot after table_reserve: a damaged table */
            break;
        } else {
            ch->new_used += atomic_load_explicit(&t.slots[idx], memory_order_relaxed) == FMT_EMPTY;
            ch->new_count++;
        }
        r.slot_off = t.off + FMT_TABLE_SLOTS_OFF + idx * 8;
        recs[j++] = r;
    }
    free(taken.slots);
    return rc < 0 ? rc : (int64_t)j;
}

/* How many of the kept records are keys absent from the current table (the inserts the
 * table must make room for; overwrites need none). */
static int64_t batch_count_new(mmkv_store *s, struct view *v, const struct batch_rec *recs,
                               size_t m)
{
    struct table t;
    int rc = table_get(s, v, atomic_load(&view_hdr(v)->table_desc), &t);
    if (rc < 0)
        return rc;
    int64_t inserts = 0;
    for (size_t i = 0; i < m; i++) {
        struct probe p;
        if ((rc = table_probe(s, v, &t, recs[i].hash, recs[i].key, recs[i].klen, 1, &p)) < 0)
            return rc;
        inserts += p.found == UINT64_MAX;
    }
    return inserts;
}

static int64_t op_write_many(mmkv_store *s, struct view *v, struct batch_ctx *c, int del)
{
    struct batch_rec *recs = calloc(c->n ? c->n : 1, sizeof(*recs));
    struct batch_set seen = {0};
    int64_t rc = recs ? batch_set_init(&seen, c->n) : -ENOMEM;
    if (rc < 0)
        goto out;
    const char *p = c->data;
    for (size_t i = 0; i < c->n; i++) {
        recs[i].key = p;
        recs[i].klen = c->klens[i];
        p += c->klens[i];
        if (!del) {
            recs[i].val = p;
            recs[i].vlen = c->vlens[i];
            p += c->vlens[i];
        }
    }
    size_t m = batch_dedupe(recs, c->n, v->g->sipkey, !del, &seen);
    if (!del && (rc = batch_count_new(s, v, recs, m)) < 0)
        goto out;
    if (!del && (rc = table_reserve(s, v, (uint64_t)rc)) < 0)
        goto out;
    struct change ch;
    rc = batch_place(s, v, recs, m, &ch);
    if (rc > 0) {
        int crc = commit_batch(s, v, recs, (size_t)rc, &ch);
        if (crc < 0)
            rc = crc;
    }
out:
    free(seen.slots);
    free(recs);
    return rc;
}

static int64_t op_set_many(mmkv_store *s, struct view *v, void *arg)
{
    int64_t rc = op_write_many(s, v, arg, 0);
    return rc < 0 ? rc : 0;
}

static int64_t op_delete_many(mmkv_store *s, struct view *v, void *arg)
{
    return op_write_many(s, v, arg, 1);
}

/* Every length within the store's limits, and the batch small enough for one plan. */
static int batch_check(mmkv_store *s, const uint32_t *klens, const uint32_t *vlens, size_t n)
{
    if (!s || atomic_load(&s->closed))
        return MMKV_ECLOSED;
    if (s->readonly)
        return MMKV_ERDONLY;
    if (n > (UINT32_MAX - 64) / 16)
        return MMKV_ETOOBIG;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        /* an over-long key cannot be in the store: delete_many just does not find it */
        if (vlens && (klens[i] > s->max_klen || vlens[i] > s->max_vlen))
            return MMKV_ETOOBIG;
        total += fmt_record_len(klens[i], vlens ? vlens[i] : 0);
    }
    return total > (1ull << 46) ? MMKV_ETOOBIG : 0;
}

int mmkv_set_many(mmkv_store *s, const char *data, const uint32_t *klens, const uint32_t *vlens,
                  size_t n)
{
    int rc = batch_check(s, klens, vlens, n);
    if (rc < 0 || n == 0)
        return rc;
    struct batch_ctx c = {.data = data, .klens = klens, .vlens = vlens, .n = n};
    return (int)call_write(s, op_set_many, &c);
}

int64_t mmkv_delete_many(mmkv_store *s, const char *keys, const uint32_t *klens, size_t n)
{
    int rc = batch_check(s, klens, NULL, n);
    if (rc < 0 || n == 0)
        return rc;
    struct batch_ctx c = {.data = keys, .klens = klens, .n = n};
    return call_write(s, op_delete_many, &c);
}
