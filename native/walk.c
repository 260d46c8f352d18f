/* walk.c - the log walk and the replay: reading the log in order, record by record, with
 * every check a record must pass, and replaying PUT, DEL and CLEAR records into a private
 * map from each key to its newest record.  The structural check (check.c), the recovery
 * scan (recover.c) and the consistent dump (snapshot.c, through walk_live_at) build on it.
 *
 * A record is valid when its header lies inside the log, its type is known, its lengths fit
 * the store's limits and the log, its CRC32C matches, its seq is the previous one plus one
 * and its epoch does not go backwards (a batch must also be whole).
 */
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the replay map: open addressing over record offsets ---- */


const struct fmt_record *replay_rec(const struct replay *m, uint64_t off)
{
    return (const struct fmt_record *)(m->base + off);
}

int replay_init(struct replay *m, const uint8_t *base, uint64_t cap)
{
    m->base = base;
    m->cap = cap;
    m->used = 0;
    m->offs = calloc(cap, sizeof(uint64_t));
    m->seen = calloc(cap, 1);
    return m->offs && m->seen ? 0 : -12;
}

void replay_free(struct replay *m)
{
    free(m->offs);
    free(m->seen);
}

uint64_t replay_find(const struct replay *m, const struct fmt_record *r)
{
    uint64_t mask = m->cap - 1, i = r->hash & mask;
    for (;; i = (i + 1) & mask) {
        uint64_t o = m->offs[i];
        if (o == 0)
            return i;
        const struct fmt_record *q = replay_rec(m, o);
        if (q->hash == r->hash && q->klen == r->klen && memcmp(q + 1, r + 1, r->klen) == 0)
            return i;
    }
}

int replay_add(struct replay *m, uint64_t off)
{
    if ((m->used + 1) * 2 > m->cap) {
        struct replay n;
        if (replay_init(&n, m->base, m->cap * 2) < 0)
            return -ENOMEM;
        for (uint64_t i = 0; i < m->cap; i++)
            if (m->offs[i]) {
                uint64_t j = replay_find(&n, replay_rec(m, m->offs[i]));
                n.offs[j] = m->offs[i];
                n.seen[j] = m->seen[i];
            }
        n.used = m->used;
        replay_free(m);
        *m = n;
    }
    uint64_t i = replay_find(m, replay_rec(m, off));
    if (m->offs[i] == 0)
        m->used++;
    m->offs[i] = off;
    return 0;
}

void replay_clear(struct replay *m)
{
    memset(m->offs, 0, m->cap * sizeof(uint64_t));
    m->used = 0;
}

/* ---- the log walk ---- */



/* Only PUT and DEL records carry a key; the others have klen 0 (checked before walk_len). */
int walk_kinds_ok(const struct fmt_record *r)
{
    return r->type == FMT_PUT || r->type == FMT_DEL || r->klen == 0;
}

uint64_t walk_len(const struct fmt_record *r)
{
    if (r->type == FMT_PUT || r->type == FMT_DEL)
        return fmt_record_len(r->klen, r->vlen);
    return fmt_align8(sizeof(*r) + (uint64_t)r->vlen);
}

/* The record at w->off if valid, else NULL with *why set. */
const struct fmt_record *walk_next(mmkv_store *s, const struct view *v, struct walk *w,
                                          const char **why)
{
    (void)s;
    if (w->off + sizeof(struct fmt_record) > w->end) {
        *why = "record header past the end of the log";
        return NULL;
    }
    const struct fmt_record *r = (const struct fmt_record *)(v->base + w->off);
    if (r->type < FMT_PUT || r->type > FMT_CLEAR) {
        *why = "unknown record type";
        return NULL;
    }
    if (r->klen > v->g->max_klen || !walk_kinds_ok(r) ||
        (r->type != FMT_TABLE && r->type != FMT_PAD && r->vlen > v->g->max_vlen)) {
        *why = "record lengths over the store's limits";
        return NULL;
    }
    if (walk_len(r) > w->end - w->off) {
        *why = "record runs past the end of the log";
        return NULL;
    }
    if (!w->skip_crc && fmt_record_crc(r) != r->crc) {
        *why = "record checksum mismatch";
        return NULL;
    }
    if ((w->seq && r->seq != w->seq + 1) || r->epoch < w->epoch || r->epoch > w->max_epoch) {
        *why = "record sequence or epoch out of order";
        return NULL;
    }
    if ((r->flags & FMT_FLAG_BATCH) && w->batch_left == 0 && !w->ahead && !w->skip_batch &&
        !walk_batch_whole(s, v, w, r)) {
        *why = "a batch whose records did not all reach the log";
        return NULL;
    }
    return r;
}

/* A batch (set_many, delete_many) counts whole or not at all: r, its first record, says how
 * many records it has; they must all be valid and carry the batch flag, the last being its
 * plan.  A power loss that kept only part of a batch thus ends the valid prefix before it. */
int walk_batch_whole(mmkv_store *s, const struct view *v, const struct walk *w,
                            const struct fmt_record *r)
{
    struct walk t = *w;
    const char *why;
    t.ahead = 1;
    if (r->reserved2 < 2)
        return 0;
    t.seq = r->seq;
    t.epoch = r->epoch;
    t.off += walk_len(r);
    for (uint32_t k = 1; k < r->reserved2; k++) {
        const struct fmt_record *q = walk_next(s, v, &t, &why);
        if (!q || !(q->flags & FMT_FLAG_BATCH) || (k + 1 == r->reserved2 && q->type != FMT_PAD))
            return 0;
        t.seq = q->seq;
        t.epoch = q->epoch;
        t.off += walk_len(q);
    }
    return 1;
}

int walk_apply(struct replay *m, struct walk *w, const struct fmt_record *r)
{
    int rc = 0;
    if (r->type == FMT_PUT || r->type == FMT_DEL)
        rc = replay_add(m, w->off);
    else if (r->type == FMT_CLEAR)
        replay_clear(m);
    else if (r->type == FMT_TABLE)
        w->last_table = w->off;
    if (r->flags & FMT_FLAG_BATCH)
        w->batch_left = w->batch_left ? w->batch_left - 1 : (uint64_t)r->reserved2 - 1;
    w->seq = r->seq;
    w->epoch = r->epoch;
    w->records++;
    w->off += walk_len(r);
    return rc;
}

void walk_start(struct walk *w, const struct view *v, uint64_t end)
{
    memset(w, 0, sizeof(*w));
    w->off = FMT_ARENA_OFF;
    w->end = end;
    w->max_epoch = atomic_load(&view_hdr(v)->epoch);
}

/* ---- the live records of a prefix of the log (the consistent dump) ---- */

int walk_live_at(mmkv_store *s, struct view *v, uint64_t end, uint64_t **offs, uint64_t *n)
{
    *offs = NULL;
    *n = 0;
    if (end > v->len && store_extend(s, v, end) < 0)
        return MMKV_ECORRUPT;
    struct replay m;
    if (replay_init(&m, v->base, 1024) < 0)
        return -ENOMEM;
    struct walk w;
    walk_start(&w, v, end);
    const char *why;
    while (w.off < end) {
        const struct fmt_record *r = walk_next(s, v, &w, &why);
        if (!r || walk_apply(&m, &w, r) < 0) {
            replay_free(&m);
            return r ? -ENOMEM : MMKV_ECORRUPT;
        }
    }
    uint64_t j = 0;
    for (uint64_t k = 0; k < m.cap; k++)
        if (m.offs[k] && replay_rec(&m, m.offs[k])->type == FMT_PUT)
            m.offs[j++] = m.offs[k];
    free(m.seen);
    *offs = m.offs;
    *n = j;
    return 0;
}
