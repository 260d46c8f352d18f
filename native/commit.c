/* commit.c - the write protocol: reserve, append, commit, publish; and the roll-forward or
 * roll-back of a writer that died holding the lock.
 *
 * The write order (every step under the writer mutex):
 *   1. make room: fallocate the file if the record does not fit (ENOSPC here, not SIGBUS);
 *   2. intent RESERVE {range}: if we die now, the next locker zeroes the range;
 *   3. write the record and its CRC32C below file_size but above tail: no reader looks there;
 *   4. intent COMMIT {slot, new slot word, new tail, new counters}: from here the write is
 *      decided, and the next locker finishes it if we die;
 *   5. tail, then the slot word with release semantics: the linearisation point, after which
 *      every reader that loads the slot sees the whole record;
 *   6. counters, then intent NONE.
 * The intent holds absolute values, so applying it twice is harmless: recovery is just
 * "apply the intent again".  A table rebuild uses the same protocol with SWAP publishing the
 * table descriptor instead of a slot.
 */
#include "internal.h"

#include <string.h>

void commit_write_header(struct fmt_record *r, int type, uint32_t klen, uint32_t vlen,
                         uint64_t seq, uint64_t epoch, uint64_t hash)
{
    r->type = (uint8_t)type;
    r->flags = 0;
    r->reserved = 0;
    r->klen = klen;
    r->vlen = vlen;
    r->seq = seq;
    r->epoch = (uint32_t)epoch;
    r->reserved2 = 0;
    r->hash = hash;
}

/* Grow the file so that [0, end) is allocated, and map it.  A failed grow is undone (ext4
 * can leave a partial allocation and a larger st_size behind a failed fallocate). */
int commit_ensure_space(mmkv_store *s, struct view *v, uint64_t end)
{
    struct fmt_header *h = view_hdr(v);
    uint64_t size = atomic_load(&h->file_size);
    if (end > size) {
        /* grow by half, at most 1 GiB at a time: a huge (or hostile) file_size must not
         * make one write try to take the whole disk */
        uint64_t want = size + (size / 2 < (1ull << 30) ? size / 2 : (1ull << 30));
        uint64_t step = want < (8ull << 20) ? (64ull << 10) : (1ull << 20);
        if (want < end)
            want = end;
        want = (want + step - 1) & ~(step - 1);
        int rc = os_vt.fallocate(v->g->fd, size, want - size);
        if (rc < 0) {
            os_vt.ftruncate(v->g->fd, size);
            return rc;
        }
        atomic_store_explicit(&h->file_size, want, memory_order_release);
    }
    return store_extend(s, v, end);
}

static int commit_desc_valid(const struct view *v, uint64_t desc)
{
    return fmt_desc_sane(desc) &&
           fmt_desc_off(desc) + FMT_TABLE_SLOTS_OFF + (8ull << fmt_desc_lg(desc)) <= v->len;
}

/* The slot a COMMIT intent publishes must lie in the current table, and the word must be a
 * tombstone or point at the record that same intent reserved. */
static int commit_slot_valid(const struct view *v, const struct fmt_header *h)
{
    uint64_t desc = atomic_load(&((struct fmt_header *)h)->table_desc), slot_off = h->i_slot_off;
    if (!commit_desc_valid(v, desc))
        return 0;
    uint64_t first = fmt_desc_off(desc) + FMT_TABLE_SLOTS_OFF, end = first + (8ull << fmt_desc_lg(desc));
    if (slot_off < first || slot_off >= end || (slot_off & 7))
        return 0;
    if (h->i_new_w != FMT_TOMB && fmt_slot_off(h->i_new_w) != h->i_reserve_off)
        return 0;
    return h->i_new_tail == h->i_reserve_off + h->i_reserve_len;
}

/* Would commit_recover apply an intent in `state` (COMMIT or SWAP) as the header holds it?
 * Every field comes from the file and is checked; the structural check (recover.c) asks
 * the same question to see a write in progress, or interrupted, as the next locker will
 * finish it. */
int commit_intent_applies(const struct view *v, uint64_t state)
{
    const struct fmt_header *h = (const struct fmt_header *)v->base;
    uint64_t t = h->i_new_tail, size = atomic_load(&((struct fmt_header *)h)->file_size);
    if (t < FMT_ARENA_OFF || t > size || t > v->len)
        return 0;
    if (state == FMT_INTENT_SWAP)
        return commit_desc_valid(v, h->i_new_desc);
    return state == FMT_INTENT_COMMIT && commit_slot_valid(v, h);
}

/* Finish or undo whatever write the intent describes; idempotent.  Called by the writer
 * itself to apply its own commit, and by the next locker after EOWNERDEAD.  Intent fields
 * come from the file, so each is checked before it is used; a bad intent is dropped. */
void commit_recover(struct view *v)
{
    struct fmt_header *h = view_hdr(v);
    uint64_t state = atomic_load_explicit(&h->intent, memory_order_acquire);
    if (state == FMT_INTENT_RESERVE) {
        uint64_t off = h->i_reserve_off, len = h->i_reserve_len;
        if (off >= FMT_ARENA_OFF && len <= v->len && off <= v->len - len)
            memset(v->base + off, 0, len);
    } else if (state == FMT_INTENT_COMMIT || state == FMT_INTENT_SWAP) {
        uint64_t t = h->i_new_tail;
        if (commit_intent_applies(v, state)) {
            atomic_store_explicit(&h->tail, t, memory_order_release);
            atomic_store_explicit(&h->seq, h->i_new_seq, memory_order_relaxed);
            if (state == FMT_INTENT_SWAP)
                atomic_store_explicit(&h->table_desc, h->i_new_desc, memory_order_release);
            else
                atomic_store_explicit((_Atomic uint64_t *)(v->base + h->i_slot_off), h->i_new_w,
                                      memory_order_release);
            atomic_store_explicit(&h->count, h->i_new_count, memory_order_relaxed);
            atomic_store_explicit(&h->garbage, h->i_new_garbage, memory_order_relaxed);
            atomic_store_explicit(&h->table_used, h->i_new_used, memory_order_relaxed);
        }
    }
    atomic_store_explicit(&h->intent, FMT_INTENT_NONE, memory_order_release);
}

/* Append one PUT or DEL record and publish change c (slot and counters).  The caller holds
 * the lock and has probed; c->slot_off and c->new_w say where the result goes. */
int commit_record(mmkv_store *s, struct view *v, int type, uint64_t hash, const char *key,
                  size_t klen, const char *val, size_t vlen, struct change *c)
{
    struct fmt_header *h = view_hdr(v);
    uint64_t tail = atomic_load(&h->tail), rlen = fmt_record_len(klen, vlen);
    int rc = commit_ensure_space(s, v, tail + rlen);
    if (rc == 0)
        rc = sparse_slot_ready(v, c->slot_off);   /* a hole under the slot: allocate it now */
    if (rc < 0)
        return rc;
    h = view_hdr(v);
    h->i_reserve_off = tail;
    h->i_reserve_len = rlen;
    atomic_store_explicit(&h->intent, FMT_INTENT_RESERVE, memory_order_release);

    uint64_t seq = atomic_load(&h->seq) + 1;
    struct fmt_record *r = (struct fmt_record *)(v->base + tail);
    commit_write_header(r, type, (uint32_t)klen, (uint32_t)vlen, seq, atomic_load(&h->epoch), hash);
    uint8_t *body = (uint8_t *)(r + 1);
    if (klen)
        memcpy(body, key, klen);
    if (vlen)
        memcpy(body + klen, val, vlen);
    memset(body + klen + vlen, 0, rlen - sizeof(*r) - klen - vlen);
    r->crc = fmt_record_crc(r);

    h->i_slot_off = c->slot_off;
    h->i_new_w = type == FMT_PUT ? fmt_slot_word(tail, hash) : FMT_TOMB;
    h->i_new_tail = tail + rlen;
    h->i_new_seq = seq;
    h->i_new_count = c->new_count;
    h->i_new_garbage = c->new_garbage + (type == FMT_DEL ? rlen : 0);
    h->i_new_used = c->new_used;
    atomic_store_explicit(&h->intent, FMT_INTENT_COMMIT, memory_order_release);
    commit_recover(v);   /* applies the COMMIT and clears the intent */
    return 0;
}
