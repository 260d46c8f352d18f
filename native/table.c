/* table.c - the hash table: slots, probing, rebuild, and the descriptor swap.
 *
 * Invariants (what makes lock-free readers correct):
 *   - a slot is one 8-byte word: 0 EMPTY, 1 TOMB, else {record offset / 8, 20-bit hash tag};
 *     writers store it with release semantics, readers load it with acquire;
 *   - a slot never goes back to EMPTY in a live table, so a key present for the whole of a
 *     read sits in one slot the whole time and every slot before it on its probe path stays
 *     non-EMPTY: the reader always reaches it;
 *   - keys move only when the table is rebuilt, into a new chunk at the end of the log; the
 *     new chunk is published by one release store of header.table_desc, and the old chunk is
 *     never written again.  A reader re-checks the descriptor after its probe and retries if
 *     it changed;
 *   - every offset and length read from a slot or the header is checked against the mapping
 *     before use, and probe loops are bounded by the capacity (a hostile table may have no
 *     EMPTY slot).
 * Rebuilds happen only on inserts (never on deletes, so `for k in d: del d[k]` sees none).
 */
#include "internal.h"

#include <string.h>

int table_get(mmkv_store *s, struct view *v, uint64_t desc, struct table *t)
{
    uint64_t off = fmt_desc_off(desc);
    unsigned lg = fmt_desc_lg(desc);
    if (!fmt_desc_sane(desc))
        return MMKV_ECORRUPT;
    uint64_t end = off + FMT_TABLE_SLOTS_OFF + (8ull << lg);
    if (end > v->len) {
        int rc = store_extend(s, v, end);
        if (rc < 0)
            return rc;
    }
    const struct fmt_record *r = (const struct fmt_record *)(v->base + off);
    if (r->type != FMT_TABLE)
        return MMKV_ECORRUPT;
    t->off = off;
    t->cap = 1ull << lg;
    t->slots = (_Atomic uint64_t *)(v->base + off + FMT_TABLE_SLOTS_OFF);
    return 0;
}

/* The record a live slot word points to, with its header and lengths checked. */
int table_record(mmkv_store *s, struct view *v, uint64_t w, const struct fmt_record **out)
{
    uint64_t off = fmt_slot_off(w);
    if (off < FMT_ARENA_OFF)
        return MMKV_ECORRUPT;
    if (off + sizeof(struct fmt_record) > v->len) {
        int rc = store_extend(s, v, off + sizeof(struct fmt_record));
        if (rc < 0)
            return rc;
    }
    const struct fmt_record *r = (const struct fmt_record *)(v->base + off);
    if (r->klen > v->g->max_klen || r->vlen > v->g->max_vlen)
        return MMKV_ECORRUPT;
    uint64_t end = off + sizeof(*r) + r->klen + r->vlen;
    if (end > v->len) {
        int rc = store_extend(s, v, end);
        if (rc < 0)
            return rc;
        r = (const struct fmt_record *)(v->base + off);
    }
    *out = r;
    return 0;
}

/* The next live slot of t at or after *i, with its word and its checked record: 1 found
 * (*i is its index; the caller steps past it), 0 at the end, or an error. */
int table_next_live(mmkv_store *s, struct view *v, const struct table *t, uint64_t *i,
                    uint64_t *w, const struct fmt_record **r)
{
    for (; *i < t->cap; (*i)++) {
        *w = atomic_load_explicit(&t->slots[*i], memory_order_relaxed);
        if (*w <= FMT_TOMB)
            continue;
        int rc = table_record(s, v, *w, r);
        return rc < 0 ? rc : 1;
    }
    return 0;
}

/* Find key in t.  Readers (writer = 0) load with acquire; the writer, which holds the lock
 * and is the only one to store slots, may load relaxed.  p->free is where an insert goes:
 * the first TOMB on the path, else the EMPTY slot that proved the key absent. */
int table_probe(mmkv_store *s, struct view *v, const struct table *t, uint64_t hash,
                const char *key, size_t klen, int writer, struct probe *p)
{
    uint64_t mask = t->cap - 1, idx = hash & mask;
    uint32_t tag = fmt_tag(hash);
    memory_order mo = writer ? memory_order_relaxed : memory_order_acquire;
    p->found = UINT64_MAX;
    p->free = UINT64_MAX;
    p->rec = NULL;
    for (uint64_t n = 0; n < t->cap; n++, idx = (idx + 1) & mask) {
        uint64_t w = atomic_load_explicit(&t->slots[idx], mo);
        if (w == FMT_EMPTY) {
            if (p->free == UINT64_MAX)
                p->free = idx;
            return 0;
        }
        if (w == FMT_TOMB) {
            if (p->free == UINT64_MAX)
                p->free = idx;
            continue;
        }
        if (fmt_slot_tag(w) != tag)
            continue;
        const struct fmt_record *r;
        int rc = table_record(s, v, w, &r);
        if (rc < 0)
            return rc;
        if (r->type == FMT_PUT && r->hash == hash && r->klen == klen &&
            memcmp(r + 1, key, klen) == 0) {
            p->found = idx;
            p->rec = r;
            return 0;
        }
    }
    return 0;
}

uint64_t table_initial_lg(uint64_t capacity)
{
    unsigned lg = FMT_MIN_CAP_LG;
    if (capacity == 0)
        return FMT_DEFAULT_CAP_LG;
    /* room for `capacity` keys under the 0.7 load limit */
    while (lg < FMT_MAX_CAP_LG && (1ull << lg) * 7 < capacity * 10)
        lg++;
    return lg;
}

static void table_write_chunk(struct view *v, uint64_t toff, unsigned lg, uint64_t seq, uint64_t epoch)
{
    struct fmt_record *r = (struct fmt_record *)(v->base + toff);
    memset(r, 0, fmt_table_chunk_len(lg));
    fmt_table_init(r, lg, seq, epoch);
}

static void table_write_filler(struct view *v, uint64_t off, int type, uint64_t len,
                               uint64_t seq, uint64_t epoch)
{
    struct fmt_record *r = (struct fmt_record *)(v->base + off);
    memset(r, 0, len);
    fmt_record_header(r, type, 0, (uint32_t)(len - sizeof(*r)), seq, epoch, 0);
    r->crc = fmt_record_crc(r);
}

/* A CLEAR record names the table it emptied (in its hash field): that table is frozen from
 * then on and lists exactly the keys the clear removed, which watch() reports one by one. */
static void table_mark_clear(struct view *v, uint64_t off, uint64_t old_desc)
{
    struct fmt_record *r = (struct fmt_record *)(v->base + off);
    r->hash = old_desc;
    r->crc = fmt_record_crc(r);
}

/* Copy the live slots of old into the chunk at toff.  The slot words stay the same: the tag
 * comes from the hash, which the record keeps, so no key is hashed again. */
static int table_copy(mmkv_store *s, struct view *v, const struct table *old, uint64_t toff,
                      unsigned lg, uint64_t *live)
{
    _Atomic uint64_t *slots = (_Atomic uint64_t *)(v->base + toff + FMT_TABLE_SLOTS_OFF);
    uint64_t mask = (1ull << lg) - 1;
    *live = 0;
    uint64_t w;
    const struct fmt_record *r;
    int rc;
    for (uint64_t i = 0; (rc = table_next_live(s, v, old, &i, &w, &r)) != 0; i++) {
        if (rc < 0)
            return rc;
        if (*live >= mask)
            return MMKV_ECORRUPT;
        uint64_t idx = r->hash & mask;
        while (atomic_load_explicit(&slots[idx], memory_order_relaxed) != FMT_EMPTY)
            idx = (idx + 1) & mask;
        atomic_store_explicit(&slots[idx], w, memory_order_relaxed);
        (*live)++;
    }
    return 0;
}

/* Rebuild the table with 2^lg slots at the end of the log (a growth, a rehash that drops the
 * tombstones, or with clear=1 an empty table after a CLEAR record).  Runs under the lock:
 * RESERVE covers the whole range, SWAP publishes it; a writer that dies in between leaves
 * either the old table (range zeroed) or the new one (SWAP rolled forward). */
static int table_rebuild(mmkv_store *s, struct view *v, unsigned lg, int clear)
{
    struct fmt_header *h = view_hdr(v);
    struct table old;
    int rc = table_get(s, v, atomic_load(&h->table_desc), &old);
    if (rc < 0)
        return rc;
    uint64_t tail = atomic_load(&h->tail), seq = atomic_load(&h->seq);
    uint64_t epoch = atomic_load(&h->epoch);
    uint64_t clear_len = clear ? fmt_record_len(0, 0) : 0;
    uint64_t toff = fmt_align_page(tail + clear_len);
    uint64_t gap = toff - (tail + clear_len);
    if (gap && gap < sizeof(struct fmt_record)) {
        toff += FMT_PAGE;
        gap += FMT_PAGE;
    }
    uint64_t chunk = fmt_table_chunk_len(lg), end = toff + chunk;
    uint64_t old_chunk = fmt_table_chunk_len(fmt_desc_lg(atomic_load(&h->table_desc)));
    rc = commit_ensure_space(s, v, end);
    if (rc < 0)
        return rc;
    h = view_hdr(v);
    h->i_reserve_off = tail;
    h->i_reserve_len = end - tail;
    atomic_store_explicit(&h->intent, FMT_INTENT_RESERVE, memory_order_release);
    if (clear) {
        table_write_filler(v, tail, FMT_CLEAR, clear_len, ++seq, epoch);
        table_mark_clear(v, tail, atomic_load(&h->table_desc));
    }
    if (gap)
        table_write_filler(v, tail + clear_len, FMT_PAD, gap, ++seq, epoch);
    table_write_chunk(v, toff, lg, ++seq, epoch);
    uint64_t live = 0;
    if (!clear && (rc = table_copy(s, v, &old, toff, lg, &live)) < 0) {
        memset(v->base + tail, 0, end - tail);
        atomic_store_explicit(&h->intent, FMT_INTENT_NONE, memory_order_release);
        return rc;
    }
    uint64_t garbage = clear ? end - FMT_ARENA_OFF - chunk
                             : atomic_load(&h->garbage) + old_chunk + gap;
    h->i_new_desc = fmt_desc(toff, lg);
    h->i_new_tail = end;
    h->i_new_seq = seq;
    h->i_new_used = live;
    h->i_new_count = live;
    h->i_new_garbage = garbage;
    atomic_store_explicit(&h->intent, FMT_INTENT_SWAP, memory_order_release);
    commit_recover(v);   /* applies the SWAP and clears the intent */
    return 0;
}

int table_make_room(mmkv_store *s, struct view *v)
{
    struct fmt_header *h = view_hdr(v);
    uint64_t desc = atomic_load(&h->table_desc);
    unsigned lg = fmt_desc_lg(desc);
    uint64_t cap = 1ull << (lg & 63), used = atomic_load(&h->table_used);
    if ((used + 1) * 10 <= cap * 7)
        return 0;
    uint64_t count = atomic_load(&h->count);
    if ((count + 1) * 100 > cap * 35) {
        if (lg >= FMT_MAX_CAP_LG)
            return MMKV_EFULL;
        lg++;
    }
    return table_rebuild(s, v, lg, 0);
}

int table_reset(mmkv_store *s, struct view *v)
{
    uint64_t desc = atomic_load(&view_hdr(v)->table_desc);
    unsigned lg = fmt_desc_lg(desc);
    if (lg > FMT_DEFAULT_CAP_LG)
        lg = FMT_DEFAULT_CAP_LG;
    if (lg < FMT_MIN_CAP_LG)
        lg = FMT_MIN_CAP_LG;
    return table_rebuild(s, v, lg, 1);
}

/* ---- batches (issue 11) ---- */

/* Room for `inserts` new keys without passing the load limit: one rebuild, to a capacity
 * that holds count + inserts keys at most 35% full (as table_make_room grows). */
int table_reserve(mmkv_store *s, struct view *v, uint64_t inserts)
{
    struct fmt_header *h = view_hdr(v);
    unsigned lg = fmt_desc_lg(atomic_load(&h->table_desc)) & 63;
    uint64_t used = atomic_load(&h->table_used), count = atomic_load(&h->count);
    if (lg > FMT_MAX_CAP_LG)
        return MMKV_ECORRUPT;
    if ((used + inserts) * 10 <= (1ull << lg) * 7)
        return 0;
    unsigned want = lg;
    while (want < FMT_MAX_CAP_LG && (count + inserts) * 100 > (1ull << want) * 35)
        want++;
    if ((count + inserts) * 10 > (1ull << want) * 7)
        return MMKV_EFULL;
    return table_rebuild(s, v, want, 0);
}
