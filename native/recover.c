/* recover.c - the recovery scan after a possible power loss: keep the longest valid prefix
 * of the log (walk.c decides what is valid), zero what follows, and rebuild the table from a
 * replay of that prefix.  Run by the first opener alone, under no other handle.
 */
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
