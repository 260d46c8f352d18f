/* check.c - the structural check (mmkv_check) and the verification walk (mmkv_verify):
 * every record of the log valid, every slot pointing at a valid record of its key, the
 * header's counts agreeing with a replay of the log, without reporting a write in progress
 * (or interrupted) as damage.  Reads only; built on the walk and the replay (walk.c).
 */
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the structural check ----
 *
 * A consistent view without the lock.  A read-only handle (`mmkv check` opens the store
 * with "r") cannot take the writer lock, and other processes go on writing while the check
 * runs; a writer may also have died in the middle of a write, leaving an intent that the
 * next locker finishes.  The check must report neither as damage.  It works on a *point*: a
 * reading of the header words it compares (tail, seq, table descriptor, counts, intent)
 * taken twice in a row with the same values, with a pending intent applied the way
 * commit_recover would apply it (COMMIT, SWAP or BATCH: the intent's tail, counts, slot,
 * table or plan of slots; RESERVE: nothing yet, the reserved bytes lie above the tail).  So
 * a live writer between two steps and a dead one look the same: as the write finished.
 * A writer publishes the tail before the slot (or the plan, or the descriptor), so a
 * writer paused between the two leaves a header whose raw words disagree with the table:
 * the intent must then be applied, and the question "would the next locker apply it?" is
 * asked within a mapping as long as the locker's (up to file_size; the writer may have
 * grown the file since this handle mapped it, and an intent past the mapping would look
 * invalid, leaving the half-published raw words to be judged as damage).
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

#define POINT_WORDS 20

/* The header words a point compares, as read (raw) and as the next locker will leave them. */
struct point {
    uint64_t raw[POINT_WORDS];
    uint64_t tail, seq, desc, count, used, garbage;
    uint64_t window;             /* the tail actually published: a pending record is above it */
    uint64_t slot_off, slot_w;   /* COMMIT: the slot the intent publishes (0: none) */
    uint64_t plan_off, plan_n;   /* BATCH: the (slot offset, word) pairs it publishes */
    int bad_reserve;             /* a RESERVE intent over bytes of the log: recovery erases them */
};

static void point_raw(const struct view *v, uint64_t raw[POINT_WORDS])
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
    raw[18] = ((const volatile uint64_t *)&h->i_plan_off)[0];
    raw[19] = ((const volatile uint64_t *)&h->i_plan_count)[0];
    atomic_thread_fence(memory_order_seq_cst);
}

/* An intent commit_recover finishes (rather than undoes). */
static int point_pending(uint64_t intent)
{
    return intent == FMT_INTENT_COMMIT || intent == FMT_INTENT_SWAP || intent == FMT_INTENT_BATCH;
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
    p->slot_off = p->slot_w = p->plan_off = p->plan_n = 0;
    p->bad_reserve = intent == FMT_INTENT_RESERVE && h->i_reserve_off < p->tail;
    if (point_pending(intent) && commit_intent_applies(v, intent)) {
        p->tail = h->i_new_tail;
        p->seq = h->i_new_seq;
        p->count = h->i_new_count;
        p->used = h->i_new_used;
        p->garbage = h->i_new_garbage;
        if (h->i_reserve_off < p->window)
            p->window = h->i_reserve_off;
        if (intent == FMT_INTENT_SWAP) {
            p->desc = h->i_new_desc;
        } else if (intent == FMT_INTENT_BATCH) {
            p->plan_off = h->i_plan_off + sizeof(struct fmt_record);
            p->plan_n = h->i_plan_count;
        } else {
            p->slot_off = h->i_slot_off;
            p->slot_w = h->i_new_w;
        }
    }
}

/* A consistent reading of the header with its intent applied: the words read, the point
 * derived from the header, the words read again, until both readings agree (tail and seq
 * only grow, so equal readings mean nothing was published in between).  A pending intent
 * is judged with the file mapped up to file_size, as the next locker judges it. */
static void point_read(mmkv_store *s, struct view *v, struct point *p)
{
    uint64_t again[POINT_WORDS];
    for (int tries = 0; tries < 100000; tries++) {
        point_raw(v, p->raw);
        if (point_pending(p->raw[0]) && v->len < p->raw[7])
            store_extend(s, v, 0);   /* failing, it maps what exists, as a locker's would */
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

struct check_pair;

/* What one round of the check carries: the replay so far and the round's judgement. */
struct check {
    mmkv_store *s;
    struct view *v;
    struct replay m;
    struct walk w;
    const char *walk_error;      /* the log is damaged at w.off (final) */
    struct point p1, p2;
    struct check_pair *plan;     /* P1's pending batch plan, sorted by slot offset */
    uint64_t plan_n;
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

/* A pair of a batch plan, with its place in the plan: re-applying a plan stores its pairs
 * in order, so of two pairs for one slot (only a hostile plan has them) the later wins. */
struct check_pair {
    uint64_t off, idx, w;
};

static int check_pair_cmp(const void *a, const void *b)
{
    const struct check_pair *x = a, *y = b;
    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Copy P1's pending batch plan (immutable: written before its intent) and sort it by slot
 * offset, for check_word. */
static int check_plan(struct check *c)
{
    free(c->plan);
    c->plan = NULL;
    c->plan_n = 0;
    if (!c->p1.plan_n)
        return 0;
    c->plan = malloc(c->p1.plan_n * sizeof(*c->plan));
    if (!c->plan)
        return -ENOMEM;
    const uint64_t *pairs = (const uint64_t *)(c->v->base + c->p1.plan_off);
    for (uint64_t i = 0; i < c->p1.plan_n; i++)
        c->plan[i] = (struct check_pair){pairs[2 * i], i, pairs[2 * i + 1]};
    c->plan_n = c->p1.plan_n;
    qsort(c->plan, c->plan_n, sizeof(*c->plan), check_pair_cmp);
    return 0;
}

/* The word of the slot at file offset off as of P1: what a pending COMMIT or batch stores
 * there, else what the table holds. */
static uint64_t check_word(const struct check *c, uint64_t off, _Atomic uint64_t *slot)
{
    if (c->p1.slot_off == off)
        return c->p1.slot_w;
    uint64_t lo = 0, hi = c->plan_n;   /* the first pair past off */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (c->plan[mid].off <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo && c->plan[lo - 1].off == off ? c->plan[lo - 1].w : atomic_load(slot);
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
        if (check_word(c, t->off + FMT_TABLE_SLOTS_OFF + j * 8, &t->slots[j]) == FMT_EMPTY) {
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
        uint64_t w = check_word(c, t->off + FMT_TABLE_SLOTS_OFF + i * 8, &t->slots[i]);
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
    point_read(c->s, v, &c->p1);
    if (c->p1.tail < c->w.off || c->p1.tail < FMT_ARENA_OFF ||
        c->p1.tail > atomic_load(&view_hdr(v)->file_size)) {
        report_add(rp, "tail %llu outside the file", (unsigned long long)c->p1.tail);
        return 0;
    }
    int rc = check_walk_to(c, c->p1.tail);
    if (rc == 0)
        rc = check_plan(c);
    if (rc < 0)
        return rc;
    struct table t;
    int table_ok = !c->walk_error && table_get(c->s, v, c->p1.desc, &t) == 0;
    memset(c->m.seen, 0, c->m.cap);
    c->m.base = v->base;
    struct report scan = {rp->buf, rp->cap, rp->len, 0};
    if (table_ok)
        check_scan(c, &t, &scan);
    point_read(c->s, v, &c->p2);
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

int check_full(mmkv_store *s, struct view *v, char *buf, size_t cap, struct mmkv_check_report *out)
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
    free(c.plan);
    if (rc < 0)
        return rc;
    out->records = c.w.records;
    out->problems = rp.problems;
    return rp.problems ? MMKV_ECORRUPT : 0;
}

/* The check without the replay: every record of the log and every record a slot points
 * to is valid.  Constant memory, for a quick verdict on a big store (`mmkv dump`). */
int check_verify(mmkv_store *s, struct view *v, char *buf, size_t cap, struct mmkv_check_report *out)
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
