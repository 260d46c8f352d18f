/* recover.c - walking the log: the structural check, and the recovery scan after a possible
 * power loss.  Both replay the log (PUT, DEL and CLEAR records in order) into a private map
 * from key to its newest record; the check compares that replay with the table and the
 * header, the scan builds a new table from it.
 *
 * A record is valid when its header lies inside the log, its type is known, its lengths fit
 * the store's limits and the log, its CRC32C matches, its seq is the previous one plus one
 * and its epoch does not go backwards.  The scan keeps the longest valid prefix; the check
 * reports every deviation.
 */
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the replay map: open addressing over record offsets ---- */

struct replay {
    uint64_t *offs;              /* 0 = empty; else the newest PUT/DEL record of a key */
    uint8_t *seen;               /* check: referenced by a table slot */
    uint64_t cap, used;
    const uint8_t *base;
};

static const struct fmt_record *replay_rec(const struct replay *m, uint64_t off)
{
    return (const struct fmt_record *)(m->base + off);
}

static int replay_init(struct replay *m, const uint8_t *base, uint64_t cap)
{
    m->base = base;
    m->cap = cap;
    m->used = 0;
    m->offs = calloc(cap, sizeof(uint64_t));
    m->seen = calloc(cap, 1);
    return m->offs && m->seen ? 0 : -12;
}

static void replay_free(struct replay *m)
{
    free(m->offs);
    free(m->seen);
}

static uint64_t replay_find(const struct replay *m, const struct fmt_record *r)
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

static int replay_add(struct replay *m, uint64_t off)
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

static void replay_clear(struct replay *m)
{
    memset(m->offs, 0, m->cap * sizeof(uint64_t));
    m->used = 0;
}

/* ---- the log walk ---- */

struct walk {
    uint64_t off, end;           /* next record; end of what may be walked */
    uint64_t seq, epoch;         /* last accepted seq (0: none yet), epoch */
    uint64_t max_epoch;
    uint64_t last_table;         /* offset of the newest TABLE record */
    uint64_t records, live_bytes;
    int skip_crc;                /* negative-control tests only (MMKV_TEST_SCAN_NO_CRC) */
    uint64_t batch_left;         /* records of the current batch still to come */
    int skip_batch;              /* negative-control tests only (MMKV_TEST_SCAN_NO_BATCH) */
    int ahead;                   /* inside walk_batch_whole's look-ahead */
};

static int walk_batch_whole(mmkv_store *s, const struct view *v, const struct walk *w,
                            const struct fmt_record *r);

/* Only PUT and DEL records carry a key; the others have klen 0 (checked before walk_len). */
static int walk_kinds_ok(const struct fmt_record *r)
{
    return r->type == FMT_PUT || r->type == FMT_DEL || r->klen == 0;
}

static uint64_t walk_len(const struct fmt_record *r)
{
    if (r->type == FMT_PUT || r->type == FMT_DEL)
        return fmt_record_len(r->klen, r->vlen);
    return fmt_align8(sizeof(*r) + (uint64_t)r->vlen);
}

/* The record at w->off if valid, else NULL with *why set. */
static const struct fmt_record *walk_next(mmkv_store *s, const struct view *v, struct walk *w,
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
static int walk_batch_whole(mmkv_store *s, const struct view *v, const struct walk *w,
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

static int walk_apply(struct replay *m, struct walk *w, const struct fmt_record *r)
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

static void walk_start(struct walk *w, const struct view *v, uint64_t end)
{
    memset(w, 0, sizeof(*w));
    w->off = FMT_ARENA_OFF;
    w->end = end;
    w->max_epoch = atomic_load(&view_hdr(v)->epoch);
}

/* ---- the structural check ----
 *
 * A consistent view without the lock.  A read-only handle (`mmkv check` opens the store
 * with "r") cannot take the writer lock, and other processes go on writing while the check
 * runs; a writer may also have died in the middle of a write, leaving an intent that the
 * next locker finishes.  The check must report neither as damage.  It works on a *point*: a
 * reading of the header words it compares (tail, seq, table descriptor, counts, intent)
 * taken twice in a row with the same values, with a pending intent applied the way
 * commit_recover would apply it (COMMIT or SWAP: the intent's tail, counts, slot or table;
 * RESERVE: nothing yet, the reserved bytes lie above the tail).  So a live writer between
 * two steps and a dead one look the same: as the write finished.
 *
 *   1. point P1; walk the log up to P1's tail into the replay (the log below a published
 *      tail never changes: that part of the walk needs no retry, and later rounds only walk
 *      on from where the last one stopped);
 *   2. scan P1's table, comparing each slot with the replay;
 *   3. point P2; walk on up to P2's tail;
 *   4. P1 == P2: nothing was published during the scan, every comparison is exact.  Else a
 *      write landed during the scan: retry a few rounds (a quiet moment is usual), then
 *      judge this round with the *window* [W, P2.tail), W being the tail published at P1:
 *      a key whose newest record lies in the window may be seen by the scan before or after
 *      its write (stale, missing or twice), and the table's own counts may be mixed; every
 *      other comparison (records, the log's seq, the header's counts against the replay at
 *      P2, keys untouched during the scan) stays exact.  A table rebuilt during the scan
 *      (P2's descriptor differs) always retries.
 * A writable handle checks under the lock (store.c), where P1 == P2 at once.
 */

#define CHECK_ROUNDS 8          /* rounds that hope for a quiet scan before judging a busy one */

struct report {
    char *buf;
    size_t cap, len;
    uint64_t problems;
};

static struct report report_start(char *buf, size_t cap, struct mmkv_check_report *out)
{
    if (buf && cap)
        buf[0] = 0;
    memset(out, 0, sizeof(*out));
    return (struct report){buf, cap, 0, 0};
}

static void report_add(struct report *rp, const char *fmt, ...)
{
    rp->problems++;
    if (!rp->buf || rp->len + 1 >= rp->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(rp->buf + rp->len, rp->cap - rp->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        rp->len = rp->len + (size_t)n < rp->cap ? rp->len + (size_t)n : rp->cap - 1;
    if (rp->len + 1 < rp->cap)
        rp->buf[rp->len++] = '\n';
    rp->buf[rp->len] = 0;
}

/* The header words a point compares, as read (raw) and as the next locker will leave them. */
struct point {
    uint64_t raw[18];
    uint64_t tail, seq, desc, count, used, garbage;
    uint64_t window;             /* the tail actually published: a pending record is above it */
    uint64_t slot_off, slot_w;   /* COMMIT: the slot the intent publishes (0: none) */
    int bad_reserve;             /* a RESERVE intent over bytes of the log: recovery erases them */
};

static void point_raw(const struct view *v, uint64_t raw[18])
{
    struct fmt_header *h = view_hdr(v);
    atomic_thread_fence(memory_order_seq_cst);
    raw[0] = atomic_load(&h->intent);
    raw[1] = atomic_load(&h->tail);
    raw[2] = atomic_load(&h->seq);
    raw[3] = atomic_load(&h->table_desc);
    raw[4] = atomic_load(&h->count);
    raw[5] = atomic_load(&h->table_used);
    raw[6] = atomic_load(&h->garbage);
    raw[7] = atomic_load(&h->file_size);
    const volatile uint64_t *f = &h->i_reserve_off;
    for (int i = 0; i < 10; i++)
        raw[8 + i] = f[i];
    atomic_thread_fence(memory_order_seq_cst);
}

/* The point from the header as it is now (see point_read for when that is consistent). */
static void point_derive(const struct view *v, struct point *p)
{
    const struct fmt_header *h = view_hdr(v);
    uint64_t intent = p->raw[0];
    p->tail = p->window = p->raw[1];
    p->seq = p->raw[2];
    p->desc = p->raw[3];
    p->count = p->raw[4];
    p->used = p->raw[5];
    p->garbage = p->raw[6];
    p->slot_off = p->slot_w = 0;
    p->bad_reserve = intent == FMT_INTENT_RESERVE && h->i_reserve_off < p->tail;
    if ((intent == FMT_INTENT_COMMIT || intent == FMT_INTENT_SWAP) &&
        commit_intent_applies(v, intent)) {
        p->tail = h->i_new_tail;
        p->seq = h->i_new_seq;
        p->count = h->i_new_count;
        p->used = h->i_new_used;
        p->garbage = h->i_new_garbage;
        if (h->i_reserve_off < p->window)
            p->window = h->i_reserve_off;
        if (intent == FMT_INTENT_SWAP) {
            p->desc = h->i_new_desc;
        } else {
            p->slot_off = h->i_slot_off;
            p->slot_w = h->i_new_w;
        }
    }
}

/* A consistent reading of the header with its intent applied: the words read, the point
 * derived from the header, the words read again, until both readings agree (tail and seq
 * only grow, so equal readings mean nothing was published in between). */
static void point_read(const struct view *v, struct point *p)
{
    uint64_t again[18];
    for (int tries = 0; tries < 100000; tries++) {
        point_raw(v, p->raw);
        point_derive(v, p);
        point_raw(v, again);
        if (memcmp(p->raw, again, sizeof(again)) == 0)
            return;
    }
}

static int point_same(const struct point *a, const struct point *b)
{
    return memcmp(a->raw, b->raw, sizeof(a->raw)) == 0;
}

/* What one round of the check carries: the replay so far and the round's judgement. */
struct check {
    mmkv_store *s;
    struct view *v;
    struct replay m;
    struct walk w;
    const char *walk_error;      /* the log is damaged at w.off (final) */
    struct point p1, p2;
    int exact;                   /* P1 == P2: no write during the scan */
    uint64_t live, tombs;        /* the table as scanned */
};

/* A key's newest record lies in the window: a write to it landed during the scan. */
static int check_touched(const struct check *c, uint64_t k)
{
    return !c->exact && c->m.offs[k] >= c->p1.window;
}

/* Walk the log on up to `end` (the log below a published tail is immutable). */
static int check_walk_to(struct check *c, uint64_t end)
{
    if (c->walk_error)
        return 0;
    if (end > c->v->len && store_extend(c->s, c->v, end) < 0) {
        c->walk_error = "the log runs past the end of the file";
        return 0;
    }
    c->m.base = c->v->base;
    c->w.end = end;
    c->w.max_epoch = atomic_load(&view_hdr(c->v)->epoch);
    while (c->w.off < end) {
        const struct fmt_record *r = walk_next(c->s, c->v, &c->w, &c->walk_error);
        if (!r)
            return 0;
        if (walk_apply(&c->m, &c->w, r) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* One live slot: its record, tag, hash and reachability, and that it is the key's newest. */
static void check_slot(struct check *c, const struct table *t, uint64_t i, uint64_t w,
                       struct report *rp)
{
    const struct fmt_record *r;
    if (table_record(c->s, c->v, w, &r) < 0 || r->type != FMT_PUT || fmt_record_crc(r) != r->crc) {
        report_add(rp, "slot %llu: points to an invalid record", (unsigned long long)i);
        return;
    }
    c->m.base = c->v->base;
    if (fmt_siphash13(c->v->g->sipkey, r + 1, r->klen) != r->hash || fmt_slot_tag(w) != fmt_tag(r->hash))
        report_add(rp, "slot %llu: hash or tag does not match the key", (unsigned long long)i);
    for (uint64_t j = r->hash & (t->cap - 1); j != i; j = (j + 1) & (t->cap - 1))
        if (atomic_load(&t->slots[j]) == FMT_EMPTY) {
            report_add(rp, "slot %llu: unreachable (EMPTY slot on its probe path)", (unsigned long long)i);
            break;
        }
    if (fmt_slot_off(w) >= c->w.off)
        return;   /* published during the scan, past the walk: judged with its key (check_keys) */
    uint64_t k = replay_find(&c->m, r);
    int pending = c->m.offs[k] >= c->p1.window;   /* its key's newest write was in flight at P1 */
    if (c->m.offs[k] != fmt_slot_off(w) && !pending)
        report_add(rp, "slot %llu: not the newest record of its key in the log", (unsigned long long)i);
    else if (c->m.seen[k]++ && !pending)
        report_add(rp, "slot %llu: key present twice in the table", (unsigned long long)i);
}

static void check_scan(struct check *c, const struct table *t, struct report *rp)
{
    c->live = c->tombs = 0;
    for (uint64_t i = 0; i < t->cap; i++) {
        uint64_t off = t->off + FMT_TABLE_SLOTS_OFF + i * 8;
        uint64_t w = c->p1.slot_off == off ? c->p1.slot_w : atomic_load(&t->slots[i]);
        if (w == FMT_TOMB)
            c->tombs++;
        else if (w != FMT_EMPTY) {
            c->live++;
            check_slot(c, t, i, w, rp);
        }
    }
}

/* After P2: every key live in the replay was seen in the table, and the counts agree. */
static void check_keys(struct check *c, struct report *rp, struct mmkv_check_report *out)
{
    uint64_t replay_live = 0, live_bytes = 0;
    for (uint64_t k = 0; k < c->m.cap; k++) {
        if (!c->m.offs[k] || replay_rec(&c->m, c->m.offs[k])->type != FMT_PUT)
            continue;
        replay_live++;
        live_bytes += fmt_record_len(replay_rec(&c->m, c->m.offs[k])->klen,
                                     replay_rec(&c->m, c->m.offs[k])->vlen);
        if (!c->m.seen[k] && !check_touched(c, k))
            report_add(rp, "a key live in the log is missing from the table");
    }
    out->live = replay_live;
    const struct point *p = &c->p2;
    if (replay_live != p->count || (c->exact && c->live != replay_live))
        report_add(rp, "counts disagree: table %llu, log %llu, header %llu", (unsigned long long)c->live,
                   (unsigned long long)replay_live, (unsigned long long)p->count);
    if (c->exact && c->live + c->tombs != p->used)
        report_add(rp, "table_used %llu but %llu slots are in use", (unsigned long long)p->used,
                   (unsigned long long)(c->live + c->tombs));
    uint64_t garbage = c->w.off - FMT_ARENA_OFF - live_bytes - fmt_table_chunk_len(fmt_desc_lg(p->desc));
    if (garbage != p->garbage)
        report_add(rp, "garbage is %llu bytes but the header says %llu", (unsigned long long)garbage,
                   (unsigned long long)p->garbage);
}

/* One round: P1, walk, scan, P2, walk, judge.  Returns 1 to retry (the round is void), 0 when
 * judged, or an error. */
static int check_round(struct check *c, int last, struct report *rp, struct mmkv_check_report *out)
{
    struct view *v = c->v;
    point_read(v, &c->p1);
    if (c->p1.tail < c->w.off || c->p1.tail < FMT_ARENA_OFF ||
        c->p1.tail > atomic_load(&view_hdr(v)->file_size)) {
        report_add(rp, "tail %llu outside the file", (unsigned long long)c->p1.tail);
        return 0;
    }
    int rc = check_walk_to(c, c->p1.tail);
    if (rc < 0)
        return rc;
    struct table t;
    int table_ok = !c->walk_error && table_get(c->s, v, c->p1.desc, &t) == 0;
    memset(c->m.seen, 0, c->m.cap);
    c->m.base = v->base;
    struct report scan = {rp->buf, rp->cap, rp->len, 0};
    if (table_ok)
        check_scan(c, &t, &scan);
    point_read(v, &c->p2);
    if (!c->walk_error && c->p2.tail >= c->w.off && (rc = check_walk_to(c, c->p2.tail)) < 0)
        return rc;
    c->exact = point_same(&c->p1, &c->p2);
    if (!c->exact && !last && !c->walk_error) {
        if (rp->buf && rp->len < rp->cap)
            rp->buf[rp->len] = 0;   /* forget the scan's findings: the round is void */
        return 1;
    }
    int rebuilt = c->p2.desc != c->p1.desc;
    if (rebuilt)
        table_ok = 0;   /* rebuilt during every round: judge the log and the header only */
    else if (!table_ok && !c->walk_error) {
        report_add(rp, "table descriptor %#llx is invalid", (unsigned long long)c->p2.desc);
        return 0;
    }
    rp->len = scan.len;
    rp->problems += scan.problems;
    if (c->p2.bad_reserve)
        report_add(rp, "a pending write reserves bytes inside the log (recovery would erase them)");
    if (c->walk_error) {
        report_add(rp, "log offset %llu: %s", (unsigned long long)c->w.off, c->walk_error);
        return 0;
    }
    if (c->w.off != c->p2.tail) {
        report_add(rp, "tail %llu outside the file", (unsigned long long)c->p2.tail);
        return 0;
    }
    if (c->w.seq != c->p2.seq)
        report_add(rp, "header seq %llu but the log ends at %llu",
                   (unsigned long long)c->p2.seq, (unsigned long long)c->w.seq);
    if (!table_ok)
        return 0;
    if (t.off != c->w.last_table)
        report_add(rp, "the current table is not the newest TABLE record of the log");
    check_keys(c, rp, out);
    return 0;
}

int recover_check(mmkv_store *s, struct view *v, char *buf, size_t cap, struct mmkv_check_report *out)
{
    struct report rp = report_start(buf, cap, out);
    struct check c = {.s = s, .v = v};
    if (replay_init(&c.m, v->base, 1024) < 0)
        return -ENOMEM;
    walk_start(&c.w, v, FMT_ARENA_OFF);
    int rc = 1;
    for (int round = 0; rc == 1; round++) {
        rc = check_round(&c, round + 1 >= CHECK_ROUNDS, &rp, out);
        if (rc == 1)
            sched_yield();   /* let the writer finish its burst */
    }
    replay_free(&c.m);
    if (rc < 0)
        return rc;
    out->records = c.w.records;
    out->problems = rp.problems;
    return rp.problems ? MMKV_ECORRUPT : 0;
}

/* ---- the live records of a prefix of the log (the consistent dump) ---- */

int recover_live_at(mmkv_store *s, struct view *v, uint64_t end, uint64_t **offs, uint64_t *n)
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

/* The check without the replay: every record of the log and every record a slot points
 * to is valid.  Constant memory, for a quick verdict on a big store (`mmkv dump`). */
int recover_verify(mmkv_store *s, struct view *v, char *buf, size_t cap, struct mmkv_check_report *out)
{
    struct report rp = report_start(buf, cap, out);
    struct fmt_header *h = view_hdr(v);
    uint64_t tail = atomic_load(&h->tail);
    if (tail > v->len)
        store_extend(s, v, tail);   /* the file grew since this handle mapped it */
    struct walk w;
    walk_start(&w, v, tail <= v->len ? tail : v->len);
    const char *why = NULL;
    while (w.off < w.end) {
        const struct fmt_record *r = walk_next(s, v, &w, &why);
        if (!r) {
            report_add(&rp, "log offset %llu: %s", (unsigned long long)w.off, why);
            break;
        }
        if (r->flags & FMT_FLAG_BATCH)
            w.batch_left = w.batch_left ? w.batch_left - 1 : (uint64_t)r->reserved2 - 1;
        w.seq = r->seq;
        w.epoch = r->epoch;
        w.records++;
        w.off += walk_len(r);
    }
    struct table t;
    if (table_get(s, v, atomic_load(&h->table_desc), &t) < 0) {
        report_add(&rp, "table descriptor is invalid");
    } else {
        for (uint64_t i = 0; i < t.cap; i++) {
            uint64_t sw = atomic_load(&t.slots[i]);
            const struct fmt_record *r;
            if (sw <= FMT_TOMB)
                continue;
            out->live++;
            if (table_record(s, v, sw, &r) < 0 || r->type != FMT_PUT || fmt_record_crc(r) != r->crc)
                report_add(&rp, "slot %llu: points to an invalid record", (unsigned long long)i);
        }
    }
    out->records = w.records;
    out->problems = rp.problems;
    return rp.problems ? MMKV_ECORRUPT : 0;
}

/* ---- the recovery scan ---- */

/* Zero [from, to) where it is not zero already, skipping holes: writing zeros into a hole
 * of a sparse file would allocate it. */
static void scan_zero(struct view *v, uint64_t from, uint64_t to)
{
    static const uint8_t zero[FMT_PAGE];
    uint64_t off = from;
    while (off < to) {
        uint64_t data, hole;
        if (os_vt.seek_data(v->g->fd, off, &data) < 0 || data >= to)
            return;
        if (os_vt.seek_hole(v->g->fd, data, &hole) < 0 || hole > to)
            hole = to;
        for (off = data; off < hole; off += FMT_PAGE) {
            uint64_t len = hole - off < FMT_PAGE ? hole - off : FMT_PAGE;
            if (memcmp(v->base + off, zero, len) != 0)
                memset(v->base + off, 0, len);
        }
    }
}

/* Build a table holding the replay's live keys at the end of the valid prefix and make the
 * header describe exactly that prefix.  Runs alone (first opener), so no reader is looking. */
static int scan_rebuild(mmkv_store *s, struct view *v, struct replay *m, struct walk *w)
{
    struct fmt_header *h = view_hdr(v);
    uint64_t live = 0, live_bytes = 0;
    for (uint64_t k = 0; k < m->cap; k++)
        if (m->offs[k] && replay_rec(m, m->offs[k])->type == FMT_PUT) {
            live++;
            live_bytes += walk_len(replay_rec(m, m->offs[k]));
        }
    unsigned lg = (unsigned)table_initial_lg(live + 1);
    uint64_t toff = fmt_align_page(w->off), gap = toff - w->off;
    if (gap && gap < sizeof(struct fmt_record)) {
        toff += FMT_PAGE;
        gap += FMT_PAGE;
    }
    uint64_t chunk = fmt_table_chunk_len(lg), end = toff + chunk;
    uint64_t old_tail = atomic_load(&h->tail);
    atomic_store(&h->tail, w->off);
    int rc = commit_ensure_space(s, v, end);
    if (rc < 0)
        return rc;
    h = view_hdr(v);
    uint64_t epoch = atomic_load(&h->epoch) + 1, seq = w->seq;
    atomic_store(&h->epoch, epoch);
    if (gap) {
        struct fmt_record *p = (struct fmt_record *)(v->base + w->off);
        memset(p, 0, gap);
        fmt_record_header(p, FMT_PAD, 0, (uint32_t)(gap - sizeof(*p)), ++seq, epoch, 0);
        p->crc = fmt_record_crc(p);
    }
    struct fmt_record *tr = (struct fmt_record *)(v->base + toff);
    memset(tr, 0, chunk);
    _Atomic uint64_t *slots = fmt_table_init(tr, lg, ++seq, epoch);
    uint64_t mask = (1ull << lg) - 1;
    for (uint64_t k = 0; k < m->cap; k++) {
        const struct fmt_record *r = m->offs[k] ? replay_rec(m, m->offs[k]) : NULL;
        if (!r || r->type != FMT_PUT)
            continue;
        uint64_t i = r->hash & mask;
        while (atomic_load(&slots[i]) != FMT_EMPTY)
            i = (i + 1) & mask;
        atomic_store(&slots[i], fmt_slot_word(m->offs[k], r->hash));
    }
    /* Zero what follows the new table up to past where the log ended before the crash, so
     * no stale record there can be taken for a valid one by a later scan.  (The epoch,
     * raised above, rejects any stale record this misses; the bound keeps a hostile
     * file_size from making recovery write zeros over a terabyte.) */
    uint64_t size = atomic_load(&h->file_size), limit = (old_tail > end ? old_tail : end) + (1ull << 20);
    if (size > v->len)
        size = v->len;
    if (limit > size)
        limit = size;
    if (limit > end)
        scan_zero(v, end, limit);
    atomic_store(&h->table_desc, fmt_desc(toff, lg));
    atomic_store(&h->tail, end);
    atomic_store(&h->seq, seq);
    atomic_store(&h->count, live);
    atomic_store(&h->table_used, live);
    atomic_store(&h->garbage, end - FMT_ARENA_OFF - live_bytes - chunk);
    atomic_store(&h->intent, FMT_INTENT_NONE);
    atomic_store(&h->published, end);
    atomic_store(&h->snap, 0);
    if (atomic_load(&h->synced_tail) > end)
        atomic_store(&h->synced_tail, end);
    /* the rebuilt table, the zeroed tail and the raised epoch must be durable before new
     * writes land: a second power loss must not find new-epoch records after an old tail */
    return s->shm ? 0 : os_vt.fdatasync(v->g->fd);
}

int recover_scan(mmkv_store *s, struct view *v)
{
    struct fmt_header *h = view_hdr(v);
    uint64_t size = atomic_load(&h->file_size);
    if (size > v->len)
        size = v->len;
    struct replay m;
    if (replay_init(&m, v->base, 1024) < 0)
        return -ENOMEM;
    struct walk w;
    walk_start(&w, v, size);
    w.skip_crc = os_vt.test_flag("SCAN_NO_CRC");
    w.skip_batch = os_vt.test_flag("SCAN_NO_BATCH");
    const char *why;
    int rc = 0;
    for (;;) {
        const struct fmt_record *r = walk_next(s, v, &w, &why);
        if (!r)
            break;
        if ((rc = walk_apply(&m, &w, r)) < 0)
            break;
    }
    if (rc == 0 && w.off < atomic_load(&h->synced_tail))
        rc = MMKV_ECORRUPT;   /* a write that sync() promised is gone */
    if (rc == 0)
        rc = scan_rebuild(s, v, &m, &w);
    replay_free(&m);
    return rc;
}

/* ---- salvage: a read-only walk of any file, resynchronising after damage ---- */

struct mmkv_salvage {
    int fd;
    const uint8_t *base;
    uint64_t size, off, last_seq;
    uint32_t max_klen;
    uint64_t max_vlen;
    uint64_t valid, gaps, regions;
    int in_bad;                  /* inside a damaged (non-zero, invalid) region */
};

int mmkv_salvage_open(const char *path, mmkv_salvage **out)
{
    *out = NULL;
    int rc = guard_install();
    if (rc < 0)
        return rc;
    int fd = os_vt.open(path, 0 /* O_RDONLY */, 0);
    if (fd < 0)
        return fd;
    uint64_t size, dev, ino;
    rc = os_vt.fstat_size(fd, &size, &dev, &ino);
    mmkv_salvage *h = calloc(1, sizeof(*h));
    if (rc == 0 && !h)
        rc = -12;
    if (rc == 0 && size < FMT_ARENA_OFF)
        rc = MMKV_ENOTSTORE;
    if (rc == 0 && !(h->base = os_map(size, fd, 0, 0)))
        rc = -12;
    if (rc < 0) {
        os_vt.close(fd);
        free(h);
        return rc;
    }
    h->fd = fd;
    h->size = size & ~7ull;
    h->off = FMT_ARENA_OFF;
    h->max_klen = FMT_MAX_KLEN;
    h->max_vlen = FMT_MAX_VLEN;
    *out = h;
    return 0;
}

static int salvage_valid(const mmkv_salvage *h, const struct fmt_record *r)
{
    if (r->type < FMT_PUT || r->type > FMT_CLEAR || r->klen > h->max_klen || !walk_kinds_ok(r))
        return 0;
    if (r->type != FMT_TABLE && r->type != FMT_PAD && r->vlen > h->max_vlen)
        return 0;
    if (walk_len(r) > h->size - h->off || r->seq <= h->last_seq)
        return 0;
    return fmt_record_crc(r) == r->crc;
}

static int salvage_zero(const uint8_t *p)
{
    for (int i = 0; i < 40; i++)
        if (p[i])
            return 0;
    return 1;
}

/* One step of the walk: *r is the record at h->off if it is valid, else NULL (and the walk
 * moved 8 bytes on).  Runs inside the caller's SIGBUS guard. */
static const struct fmt_record *salvage_step(mmkv_salvage *h)
{
    const struct fmt_record *r = (const struct fmt_record *)(h->base + h->off);
    if (salvage_valid(h, r)) {
        if (h->last_seq && r->seq > h->last_seq + 1)
            h->gaps += r->seq - h->last_seq - 1;
        h->last_seq = r->seq;
        h->in_bad = 0;
        h->valid++;
        h->off += walk_len(r);
        return r;
    }
    if (!salvage_zero((const uint8_t *)r) && !h->in_bad) {
        h->in_bad = 1;
        h->regions++;
    }
    h->off += 8;
    return NULL;
}

/* At a page boundary of zeros, jump over a hole of a sparse file instead of walking it. */
static void salvage_skip_hole(mmkv_salvage *h)
{
    uint64_t next;
    if ((h->off & (FMT_PAGE - 1)) || !salvage_zero(h->base + h->off))
        return;
    int rc = os_vt.seek_data(h->fd, h->off, &next);
    if (rc == -ENXIO)
        h->off = h->size;
    else if (rc == 0 && next > h->off)
        h->off = next & ~7ull;
}

static int salvage_batch(mmkv_salvage *h, char *buf, size_t cap, struct mmkv_salvage_item *items,
                         size_t max_items, size_t *n, size_t *need)
{
    size_t used = 0;
    *n = 0;
    while (*n < max_items && h->off + sizeof(struct fmt_record) <= h->size) {
        salvage_skip_hole(h);
        if (h->off + sizeof(struct fmt_record) > h->size)
            break;
        uint64_t at = h->off, seq = h->last_seq, gaps = h->gaps, valid = h->valid;
        const struct fmt_record *r = salvage_step(h);
        if (!r || r->type == FMT_TABLE || r->type == FMT_PAD)
            continue;
        uint64_t len = (uint64_t)r->klen + r->vlen;
        if (used + len > cap) {
            h->off = at;   /* give this record back */
            h->last_seq = seq;
            h->gaps = gaps;
            h->valid = valid;
            if (*n == 0) {
                *need = len;
                return MMKV_EBUFSIZE;
            }
            return 0;
        }
        struct mmkv_salvage_item *it = &items[(*n)++];
        it->seq = r->seq;
        it->type = r->type;
        it->klen = r->klen;
        it->vlen = r->type == FMT_PUT ? r->vlen : 0;
        it->data_off = used;
        memcpy(buf + used, r + 1, (size_t)r->klen + it->vlen);
        used += r->klen + it->vlen;
    }
    return h->off + sizeof(struct fmt_record) > h->size ? 1 : 0;
}

int mmkv_salvage_next(mmkv_salvage *h, char *buf, size_t cap, struct mmkv_salvage_item *items,
                      size_t max_items, size_t *n, size_t *need)
{
    sigjmp_buf env;
    if (sigsetjmp(env, 0)) {
        guard_disarm();
        return MMKV_EFAULT;
    }
    guard_arm(&env);
    int rc = salvage_batch(h, buf, cap, items, max_items, n, need);
    guard_disarm();
    return rc;
}

void mmkv_salvage_counts(mmkv_salvage *h, uint64_t *valid, uint64_t *skipped)
{
    *valid = h->valid;
    *skipped = h->gaps > h->regions ? h->gaps : h->regions;
}

void mmkv_salvage_close(mmkv_salvage *h)
{
    if (!h)
        return;
    os_unmap((void *)h->base, h->size);
    os_vt.close(h->fd);
    free(h);
}
