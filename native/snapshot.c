/* snapshot.c - the consistent dump: the store's contents at one moment, read while other
 * processes go on writing, holding them up for no longer than one write.
 *
 * The moment.  Every write and every `lock()` block runs under the writer mutex, so a tail
 * read while holding the mutex is the end of a log in which no block is half done.  A
 * writable handle takes the mutex just to read the tail and the seq, and releases it.  A
 * read-only handle cannot take it (its file may be read-only), so it looks at the mutex
 * instead: it reads the mutex word, the tail and the intent, then the word and the tail
 * again, and accepts the tail only if no live thread held the mutex at either look and the
 * tail did not move.  A block that ran in between and wrote anything moved the tail; one
 * still running at the second look holds the word.  When the holder died (the word says
 * FUTEX_OWNER_DIED, no owner), its pending write counts as the next locker will finish it.
 * It looks in a tight loop for a few milliseconds (a writer that re-takes the lock at once
 * leaves it free for microseconds); still busy: -EAGAIN, and the caller
 * (mmkv/_snapshot.py) retries after a short sleep.
 *
 * The contents.  With the file pinned, the log below that tail never changes (a compaction
 * retires the file but leaves it mapped for the pin), so a walk up to the tail gives, for
 * each key, its last record at or below it: the snapshot.  The walk keeps one 8-byte offset
 * per key (walk_live_at); keys and values are then copied out in batches from those
 * offsets, every value's checksum verified.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct mmkv_snapshot {
    mmkv_store *s;
    struct gen *g;               /* pinned for the snapshot's life */
    uint64_t tail, seq;
    uint64_t *offs, n, pos;      /* newest PUT record of each live key at the moment */
};

static int snap_enter(mmkv_store *s)
{
    atomic_fetch_add(&s->inflight, 1);
    if (atomic_load(&s->closed)) {
        atomic_fetch_sub(&s->inflight, 1);
        return MMKV_ECLOSED;
    }
    return 0;
}

static void snap_leave(mmkv_store *s)
{
    atomic_fetch_sub(&s->inflight, 1);
}

/* One look, for a read-only handle: see the top.  0, or -EAGAIN while a writer is busy.
 * A pending intent is judged with the file mapped up to file_size, as the next locker
 * judges it (a dead holder's write past this handle's older mapping still counts). */
static int snap_look(mmkv_store *s, struct view *v, uint64_t *tail, uint64_t *seq)
{
    struct fmt_header *h = view_hdr(v);
    uint64_t pending = atomic_load(&h->intent);
    if ((pending == FMT_INTENT_COMMIT || pending == FMT_INTENT_SWAP) &&
        v->len < atomic_load(&h->file_size)) {
        store_extend(s, v, 0);   /* failing, it maps what exists, as a locker's would */
        h = view_hdr(v);
    }
    const _Atomic uint32_t *word =
        (const _Atomic uint32_t *)(v->base + FMT_LOCK_OFF + offsetof(struct fmt_lockpage, mutex));
    uint32_t a = atomic_load(word);
    uint64_t t = atomic_load(&h->tail), q = atomic_load(&h->seq), intent = atomic_load(&h->intent);
    uint64_t new_tail = h->i_new_tail, new_seq = h->i_new_seq;
    uint32_t b = atomic_load(word);
    if ((a & FUTEX_TID_MASK) || (b & FUTEX_TID_MASK) || atomic_load(&h->tail) != t ||
        atomic_load(&h->intent) != intent)
        return -EAGAIN;
    if ((intent == FMT_INTENT_COMMIT || intent == FMT_INTENT_SWAP) && commit_intent_applies(v, intent)) {
        t = new_tail;   /* the holder died after deciding its write: it counts */
        q = new_seq;
    }
    *tail = t;
    *seq = q;
    return 0;
}

/* The moment, for a read-only handle.  A writer that re-takes the lock as soon as it lets
 * go leaves it free for a few microseconds at a time, so look in a tight loop for up to
 * SNAP_SPIN_NS before giving up (-EAGAIN; the caller sleeps and calls again). */
#define SNAP_SPIN_NS 3000000ull

static int snap_point_unlocked(mmkv_store *s, struct view *v, uint64_t *tail, uint64_t *seq)
{
    uint64_t deadline = os_now_ns() + SNAP_SPIN_NS;
    for (unsigned i = 0;; i++) {
        if (snap_look(s, v, tail, seq) == 0)
            return 0;
        if ((i & 255) == 255 && os_now_ns() > deadline)
            return -EAGAIN;
    }
}

/* The moment, for a writable handle: under the mutex (which also finishes a dead holder's
 * write).  Returns 1 if the store moved to another file (the caller switches). */
static int snap_point_locked(mmkv_store *s, struct view *v, uint64_t *tail, uint64_t *seq,
                             volatile int *locked)
{
    int rc = lock_acquire(s, v);
    if (rc < 0)
        return rc;
    *locked = 1;   /* a fault from here on must still release the mutex (snap_take) */
    struct fmt_header *h = view_hdr(v);
    if (atomic_load(&h->state) != FMT_ACTIVE || atomic_load(&h->compact_tag) != 0)
        rc = compact_resolve(s, v);
    *tail = atomic_load(&h->tail);
    *seq = atomic_load(&h->seq);
    lock_release(v);
    *locked = 0;
    return rc;
}

struct snap_take_ctx {
    mmkv_snapshot *sn;
    volatile int locked;
};

static int64_t snap_take_guarded(void *arg)
{
    struct snap_take_ctx *c = arg;
    mmkv_snapshot *sn = c->sn;
    struct view v;
    store_view(sn->g, &v);
    uint64_t state = atomic_load_explicit(&view_hdr(&v)->state, memory_order_acquire);
    int rc = state != FMT_ACTIVE && store_moved(sn->s, sn->g, state) ? 1 : 0;
    if (rc == 0)
        rc = sn->s->readonly ? snap_point_unlocked(sn->s, &v, &sn->tail, &sn->seq)
                             : snap_point_locked(sn->s, &v, &sn->tail, &sn->seq, &c->locked);
    if (rc == 0)
        rc = walk_live_at(sn->s, &v, sn->tail, &sn->offs, &sn->n);
    return rc;
}

static int64_t snap_unlock(void *g)
{
    struct view v = {.g = g};
    lock_release(&v);
    return 0;
}

/* One attempt on the pinned gen: 0 done, 1 moved (switch and retry), or an error.  A fault
 * while the mutex is held releases it, so a truncated file never leaves the lock taken. */
static int snap_take(mmkv_snapshot *sn)
{
    struct snap_take_ctx c = {sn, 0};
    int rc = (int)guard_run(snap_take_guarded, &c);
    if (rc == MMKV_EFAULT && c.locked)
        guard_run(snap_unlock, sn->g);
    return rc;
}

int mmkv_snapshot_begin(mmkv_store *s, mmkv_snapshot **out, uint64_t *seq)
{
    *out = NULL;
    if (!s)
        return MMKV_ECLOSED;
    mmkv_snapshot *sn = calloc(1, sizeof(*sn));
    if (!sn)
        return -ENOMEM;
    int rc = snap_enter(s);
    if (rc < 0) {
        free(sn);
        return rc;
    }
    sn->s = s;
    for (int tries = 0;; tries++) {
        struct gen *g = sn->g = store_gen_pin(s);
        if (!g) {
            rc = MMKV_ECLOSED;
            break;
        }
        rc = snap_take(sn);
        if (rc == 0)
            break;
        if (rc == 1)
            rc = tries < 100 ? store_switch(s, g) : MMKV_ECORRUPT;
        store_gen_unpin(g);
        sn->g = NULL;
        if (rc < 0)
            break;
    }
    snap_leave(s);
    if (rc < 0) {
        free(sn->offs);
        free(sn);
        return rc;
    }
    *seq = sn->seq;
    *out = sn;
    return 0;
}

struct snap_next_ctx {
    mmkv_snapshot *sn;
    char *buf;
    size_t cap;
    uint32_t *klens;
    uint64_t *offs;
    size_t max_keys, *n, *need;
};

static int64_t snap_next_guarded(void *arg)
{
    struct snap_next_ctx *c = arg;
    mmkv_snapshot *sn = c->sn;
    struct view v;
    store_view(sn->g, &v);
    size_t used = 0;
    while (*c->n < c->max_keys && sn->pos < sn->n) {
        uint64_t off = sn->offs[sn->pos];
        const struct fmt_record *r = (const struct fmt_record *)(v.base + off);
        /* the walk validated these records below the tail; checked again before use */
        if (off + sizeof(*r) > sn->tail || off + sizeof(*r) + r->klen > sn->tail)
            return MMKV_ECORRUPT;
        if (used + r->klen > c->cap) {
            if (*c->n == 0) {
                *c->need = r->klen;
                return MMKV_EBUFSIZE;
            }
            break;
        }
        memcpy(c->buf + used, r + 1, r->klen);
        used += r->klen;
        c->klens[*c->n] = r->klen;
        c->offs[(*c->n)++] = off;
        sn->pos++;
    }
    return sn->pos >= sn->n ? 1 : 0;
}

/* Copy the next keys into buf (lengths to klens, record offsets to offs).  1 at the end. */
int mmkv_snapshot_next(mmkv_snapshot *sn, char *buf, size_t cap, uint32_t *klens, uint64_t *offs,
                       size_t max_keys, size_t *n, size_t *need)
{
    *n = 0;
    int rc = snap_enter(sn->s);
    if (rc < 0)
        return rc;
    struct snap_next_ctx c = {sn, buf, cap, klens, offs, max_keys, n, need};
    rc = (int)guard_run(snap_next_guarded, &c);
    snap_leave(sn->s);
    return rc;
}

/* The value of the snapshot record at off (from mmkv_snapshot_next), checksum verified.
 * Returns its length; larger than cap: nothing copied, retry with a bigger buffer. */
struct snap_value_ctx {
    mmkv_snapshot *sn;
    uint64_t off;
    char *buf;
    size_t cap;
};

static int64_t snap_value_guarded(void *arg)
{
    struct snap_value_ctx *c = arg;
    struct view v;
    store_view(c->sn->g, &v);
    uint64_t off = c->off, tail = c->sn->tail;
    const struct fmt_record *r = (const struct fmt_record *)(v.base + off);
    if (off < FMT_ARENA_OFF || off + sizeof(*r) > tail || r->type != FMT_PUT ||
        off + fmt_record_len(r->klen, r->vlen) > tail)
        return MMKV_ECORRUPT;
    if (r->vlen > c->cap)
        return r->vlen;
    if (fmt_record_crc(r) != r->crc)
        return MMKV_ECORRUPT;
    memcpy(c->buf, (const char *)(r + 1) + r->klen, r->vlen);
    return r->vlen;
}

int64_t mmkv_snapshot_value(mmkv_snapshot *sn, uint64_t off, char *buf, size_t cap)
{
    int64_t rc = snap_enter(sn->s);
    if (rc < 0)
        return rc;
    struct snap_value_ctx c = {sn, off, buf, cap};
    rc = guard_run(snap_value_guarded, &c);
    snap_leave(sn->s);
    return rc;
}

void mmkv_snapshot_end(mmkv_snapshot *sn)
{
    if (!sn)
        return;
    if (sn->g)
        store_gen_unpin(sn->g);
    free(sn->offs);
    free(sn);
}
