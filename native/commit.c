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
 *
 * Batches (set_many, delete_many) use it with BATCH: step 3 appends all the batch's records
 * and then a plan (a PAD record whose body lists every (slot offset, slot word) to store);
 * step 4 names the plan; step 5 makes the snapshot word odd, stores every slot of the plan,
 * and makes it even again.  Re-applying a plan stores the same words again, so recovery
 * is still "apply the intent again", and get_many (which retries while the word is odd or
 * changed) sees all of a batch or none of it.  Every write ends with commit_notify: the
 * snapshot word (+2), `published` (what log readers may read), and FUTEX_WAKE for watchers,
 * only when one is registered.
 */
#include "internal.h"

#include <string.h>

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

static void commit_apply_batch(struct view *v, struct fmt_header *h);
static int commit_batch_valid(const struct view *v, struct fmt_header *h);
/* Would commit_recover apply an intent in `state` (COMMIT, SWAP or BATCH) as the header
 * holds it?  Every field comes from the file and is checked; the structural check
 * (check.c) asks the same question to see a write in progress, or interrupted, as the next
 * locker will finish it.  The answer depends on v->len: a caller that wants the next
 * locker's answer maps the file up to file_size first, as a locker does. */
int commit_intent_applies(const struct view *v, uint64_t state)
{
    const struct fmt_header *h = (const struct fmt_header *)v->base;
    uint64_t t = h->i_new_tail, size = atomic_load(&((struct fmt_header *)h)->file_size);
    if (t < FMT_ARENA_OFF || t > size || t > v->len)
        return 0;
    if (state == FMT_INTENT_SWAP)
        return commit_desc_valid(v, h->i_new_desc);
    if (state == FMT_INTENT_BATCH)
        return commit_batch_valid(v, (struct fmt_header *)h);
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
            commit_notify(h);
        }
    } else if (state == FMT_INTENT_BATCH) {
        commit_apply_batch(v, h);
    }
    uint64_t sn = atomic_load_explicit(&h->snap, memory_order_relaxed);
    if (sn & 1)   /* a batch intent that was dropped (hostile): readers must not wait forever */
        atomic_store_explicit(&h->snap, sn + 1, memory_order_release);
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
    fmt_record_header(r, type, (uint32_t)klen, (uint32_t)vlen, seq, atomic_load(&h->epoch), hash);
    uint8_t *body = (uint8_t *)(r + 1);
    if (klen)
        memcpy(body, key, klen);
    if (vlen)
        memcpy(body + klen, val, vlen);
    memset(body + klen + vlen, 0, rlen - sizeof(*r) - klen - vlen);
    r->crc = fmt_record_crc(r);
    if (os_write_kill_armed)
        os_vt.crash_point("write", 0);

    h->i_slot_off = c->slot_off;
    h->i_new_w = type == FMT_PUT ? fmt_slot_word(tail, hash) : FMT_TOMB;
    h->i_new_tail = tail + rlen;
    h->i_new_seq = seq;
    h->i_new_count = c->new_count;
    h->i_new_garbage = c->new_garbage + (type == FMT_DEL ? rlen : 0);
    h->i_new_used = c->new_used;
    atomic_store_explicit(&h->intent, FMT_INTENT_COMMIT, memory_order_release);
    if (os_write_kill_armed)
        os_vt.crash_point("write", 1);
    commit_recover(v);   /* applies the COMMIT and clears the intent */
    return 0;
}

/* ---- batches, the snapshot word and watchers (issues 11, 12) ---- */

void commit_notify(struct fmt_header *h)
{
    uint64_t sn = atomic_load_explicit(&h->snap, memory_order_relaxed);
    atomic_store_explicit(&h->snap, sn + ((sn & 1) ? 1 : 2), memory_order_release);
    atomic_store_explicit(&h->published, atomic_load(&h->tail), memory_order_release);
    atomic_fetch_add(&h->wake, 1);
    if (atomic_load(&h->watchers))
        os_futex_wake(&h->wake);
}

/* A BATCH intent read from the file: the range, the plan inside it, and every pair of the
 * plan (slot inside the current table, word a tombstone or a record of the range). */
static int commit_batch_valid(const struct view *v, struct fmt_header *h)
{
    uint64_t ro = h->i_reserve_off, rl = h->i_reserve_len, t = h->i_new_tail;
    uint64_t po = h->i_plan_off, pc = h->i_plan_count, desc = atomic_load(&h->table_desc);
    if (ro < FMT_ARENA_OFF || rl > v->len || ro > v->len - rl || t != ro + rl ||
        t > atomic_load(&h->file_size) || po < ro || (po & 7) || t - po < sizeof(struct fmt_record) ||
        pc > (t - po - sizeof(struct fmt_record)) / 16 || !commit_desc_valid(v, desc))
        return 0;
    uint64_t first = fmt_desc_off(desc) + FMT_TABLE_SLOTS_OFF, end = first + (8ull << fmt_desc_lg(desc));
    const uint64_t *pairs = (const uint64_t *)(v->base + po + sizeof(struct fmt_record));
    for (uint64_t i = 0; i < pc; i++) {
        uint64_t so = pairs[2 * i], w = pairs[2 * i + 1];
        if (so < first || so >= end || (so & 7))
            return 0;
        if (w != FMT_TOMB && (w <= FMT_TOMB || fmt_slot_off(w) < ro || fmt_slot_off(w) >= po))
            return 0;
    }
    return 1;
}

static void commit_apply_batch(struct view *v, struct fmt_header *h)
{
    if (!commit_batch_valid(v, h))
        return;
    atomic_store_explicit(&h->tail, h->i_new_tail, memory_order_release);
    atomic_store_explicit(&h->seq, h->i_new_seq, memory_order_relaxed);
    uint64_t sn = atomic_load_explicit(&h->snap, memory_order_relaxed);
    if (!(sn & 1))
        atomic_store_explicit(&h->snap, sn + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);   /* odd before any slot of the batch */
    const uint64_t *pairs = (const uint64_t *)(v->base + h->i_plan_off + sizeof(struct fmt_record));
    for (uint64_t i = 0; i < h->i_plan_count; i++)
        atomic_store_explicit((_Atomic uint64_t *)(v->base + pairs[2 * i]), pairs[2 * i + 1],
                              memory_order_release);
    atomic_store_explicit(&h->count, h->i_new_count, memory_order_relaxed);
    atomic_store_explicit(&h->garbage, h->i_new_garbage, memory_order_relaxed);
    atomic_store_explicit(&h->table_used, h->i_new_used, memory_order_relaxed);
    commit_notify(h);
}

static void commit_batch_record(struct view *v, uint64_t off, const struct batch_rec *b,
                                uint64_t seq, uint64_t epoch)
{
    struct fmt_record *r = (struct fmt_record *)(v->base + off);
    uint64_t rlen = fmt_record_len(b->klen, b->vlen);
    fmt_record_header(r, b->type, b->klen, b->vlen, seq, epoch, b->hash);
    r->flags = FMT_FLAG_BATCH;
    uint8_t *body = (uint8_t *)(r + 1);
    if (b->klen)
        memcpy(body, b->key, b->klen);
    if (b->vlen)
        memcpy(body + b->klen, b->val, b->vlen);
    memset(body + b->klen + b->vlen, 0, rlen - sizeof(*r) - b->klen - b->vlen);
}

int commit_batch(mmkv_store *s, struct view *v, const struct batch_rec *recs, size_t n,
                 const struct change *c)
{
    struct fmt_header *h = view_hdr(v);
    uint64_t tail = atomic_load(&h->tail), total = 0, dels = 0;
    uint64_t plan_len = fmt_align8(sizeof(struct fmt_record) + 16 * (uint64_t)n);
    for (size_t i = 0; i < n; i++)
        total += fmt_record_len(recs[i].klen, recs[i].vlen);
    total += plan_len;
    int rc = commit_ensure_space(s, v, tail + total);
    if (rc < 0)
        return rc;
    h = view_hdr(v);
    h->i_reserve_off = tail;
    h->i_reserve_len = total;
    atomic_store_explicit(&h->intent, FMT_INTENT_RESERVE, memory_order_release);

    uint64_t seq = atomic_load(&h->seq), epoch = atomic_load(&h->epoch), off = tail;
    uint64_t plan_off = tail + total - plan_len;
    uint64_t *pairs = (uint64_t *)(v->base + plan_off + sizeof(struct fmt_record));
    for (size_t i = 0; i < n; i++) {
        struct fmt_record *r = (struct fmt_record *)(v->base + off);
        commit_batch_record(v, off, &recs[i], ++seq, epoch);
        if (i == 0)
            r->reserved2 = (uint32_t)(n + 1);
        r->crc = fmt_record_crc(r);
        pairs[2 * i] = recs[i].slot_off;
        pairs[2 * i + 1] = recs[i].type == FMT_PUT ? fmt_slot_word(off, recs[i].hash) : FMT_TOMB;
        if (recs[i].type == FMT_DEL)
            dels += fmt_record_len(recs[i].klen, 0);
        off += fmt_record_len(recs[i].klen, recs[i].vlen);
    }
    struct fmt_record *p = (struct fmt_record *)(v->base + plan_off);
    fmt_record_header(p, FMT_PAD, 0, (uint32_t)(plan_len - sizeof(*p)), ++seq, epoch, 0);
    p->flags = FMT_FLAG_BATCH;
    memset((uint8_t *)(pairs + 2 * n), 0, plan_len - sizeof(*p) - 16 * n);
    p->crc = fmt_record_crc(p);

    h->i_new_tail = tail + total;
    h->i_new_seq = seq;
    h->i_new_count = c->new_count;
    h->i_new_garbage = c->new_garbage + dels + plan_len;
    h->i_new_used = c->new_used;
    h->i_plan_off = plan_off;
    h->i_plan_count = n;
    atomic_store_explicit(&h->intent, FMT_INTENT_BATCH, memory_order_release);
    commit_recover(v);   /* applies the plan and clears the intent */
    return 0;
}
