/* compact.c - online compaction: copy the live records into a new file and rename it over
 * the path, while other processes go on reading (and wait to write).
 *
 * Compaction beside live readers.  The compactor holds the old file A's writer mutex, so
 * A's contents are frozen while it copies.  The steps, and what a SIGKILL after each leaves:
 *   1. A.compact_tag = T; create B = PATH.compact-T (O_EXCL), write the live records in
 *      slot order and a fresh table, fdatasync(B).   Killed: A is ACTIVE and whole; the next
 *      locker of A sees the tag, removes B and goes on.
 *   2. take B's read OFD lock and B's mutex (no write can land in B before step 5);
 *      A.state = RETIRING; rename(B, PATH); fsync the directory.   Killed before the
 *      rename: the next locker finds PATH still naming A, removes B, sets A ACTIVE.  After
 *      it: PATH names B (durable, complete); A's next locker marks A RETIRED; B's mutex
 *      reports the compactor's death to B's first writer, whose recovery has nothing to do.
 *   3. A.state = RETIRED; this handle moves to B; unlock B (the caller unlocks A).
 * Readers check A.state on every call.  RETIRED: move to the file at the path.  RETIRING:
 * A is still exact unless the rename happened and someone wrote to B, so they look at
 * the path (one stat) and move if it names another file.  A reader in flight finishes on
 * A's mapping, which its gen pin keeps alive; A's descriptor and mapping (and so its disk
 * space) are released when the last user in the process lets go.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COMPACT_MIN_GARBAGE (4ull << 20)

/* Crash tests may kill the compactor at step N (1 tag set, 2 new file built, 3 RETIRING,
 * 4 renamed, 5 RETIRED) through the os.c table, to see what every step leaves behind. */
static void compact_test_point(int step)
{
    os_vt.crash_point("compact", step);
}

int compact_wanted(const struct view *v)
{
    const struct fmt_header *h = view_hdr(v);
    uint64_t garbage = atomic_load(&((struct fmt_header *)h)->garbage);
    uint64_t used = atomic_load(&((struct fmt_header *)h)->tail) - FMT_ARENA_OFF;
    return garbage > COMPACT_MIN_GARBAGE && garbage * 2 > used;
}

/* Size of the file compaction would write for `live` records of `bytes` bytes. */
static void compact_geometry(uint64_t live, uint64_t bytes, unsigned *lg, uint64_t *chunk,
                             uint64_t *tail, uint64_t *size)
{
    *lg = (unsigned)table_initial_lg(live + live / 2 + 16);
    *chunk = fmt_table_chunk_len(*lg);
    *tail = FMT_ARENA_OFF + *chunk + bytes;
    *size = (*tail + (128ull << 10) - 1) & ~((64ull << 10) - 1);
}

/* What a compaction would free: the dead bytes of the log, plus the part of the table and of
 * the spare space at the end that the compacted file would not need. */
uint64_t compact_reclaimable(const struct view *v)
{
    struct fmt_header *h = view_hdr(v);
    uint64_t tail = atomic_load(&h->tail), garbage = atomic_load(&h->garbage);
    uint64_t size = atomic_load(&h->file_size), chunk, new_tail, new_size;
    uint64_t table = fmt_table_chunk_len(fmt_desc_lg(atomic_load(&h->table_desc)) & 31);
    if (tail < FMT_ARENA_OFF + garbage + table || size < tail)
        return garbage;   /* damaged counters: say what the header says */
    unsigned lg;
    compact_geometry(atomic_load(&h->count), tail - FMT_ARENA_OFF - garbage - table, &lg,
                     &chunk, &new_tail, &new_size);
    uint64_t out = garbage;
    if (table > chunk)
        out += table - chunk;
    if (size - tail > new_size - new_tail)
        out += (size - tail) - (new_size - new_tail);
    return out;
}

/* `.mmkv-<tag>.compact` beside the store: short whatever the store's name (names.c) */
static int compact_tmp_path(const mmkv_store *s, uint64_t tag, char *out, size_t cap)
{
    return names_tmp_beside(s->path, "compact", tag, out, cap);
}

/* The lock holder found A not ACTIVE, or a compaction tag left behind.  Returns 1 if the
 * store has moved to another file (the caller switches), 0 if A is usable again. */
int compact_resolve(mmkv_store *s, struct view *v)
{
    struct fmt_header *h = view_hdr(v);
    uint64_t state = atomic_load(&h->state), tag = atomic_load(&h->compact_tag);
    if (state == FMT_RETIRED)
        return 1;
    if (state == FMT_RETIRING) {
        uint64_t dev, ino;
        if (os_vt.stat_ino(s->path, &dev, &ino) == 0 && (dev != v->g->dev || ino != v->g->ino)) {
            atomic_store(&h->state, FMT_RETIRED);
            atomic_store(&h->compact_tag, 0);
            commit_notify(h);
            return 1;
        }
    }
    if (tag) {
        char tmp[PATH_MAX];
        if (compact_tmp_path(s, tag, tmp, sizeof(tmp)) == 0)
            os_vt.unlink(tmp);
    }
    atomic_store(&h->compact_tag, 0);
    atomic_store(&h->state, FMT_ACTIVE);
    return 0;
}

struct compact_plan {
    uint64_t live, bytes;        /* live records and their bytes */
    unsigned lg;                 /* table of the new file */
    uint64_t chunk, tail, size;
};

static int compact_measure(mmkv_store *s, struct view *v, const struct table *t, struct compact_plan *p)
{
    p->live = p->bytes = 0;
    uint64_t w;
    const struct fmt_record *r;
    int rc;
    for (uint64_t i = 0; (rc = table_next_live(s, v, t, &i, &w, &r)) != 0; i++) {
        if (rc < 0)
            return rc;
        p->live++;
        p->bytes += fmt_record_len(r->klen, r->vlen);
    }
    compact_geometry(p->live, p->bytes, &p->lg, &p->chunk, &p->tail, &p->size);
    return 0;
}

/* Compaction keeps sequence numbers: B's copy (its table, then the live records) takes the
 * seqs that end at A's last one, so B continues A's count, and B's base_seq says where its
 * own changes begin (watch() and range() resume there).  A's seq is at least live + 1 (each
 * live record and A's first table had a seq of their own) unless A is damaged. */
static uint64_t compact_first_seq(struct fmt_header *ah, uint64_t live)
{
    uint64_t last = atomic_load(&ah->seq);
    return last > live + 1 ? last - live : 1;
}

/* Write B's header, table and records through B's mapping. */
static int compact_fill(mmkv_store *s, struct view *a, const struct table *t,
                        const struct compact_plan *p, struct view *b)
{
    struct fmt_header *ah = view_hdr(a), *bh = view_hdr(b);
    uint64_t epoch = atomic_load(&ah->epoch) + 1, seq = compact_first_seq(ah, p->live);
    memcpy(bh, ah, offsetof(struct fmt_header, table_desc));   /* the immutable part */
    struct fmt_record *tr = (struct fmt_record *)(b->base + FMT_ARENA_OFF);
    _Atomic uint64_t *slots = fmt_table_init(tr, p->lg, seq, epoch);   /* B is fresh: zeroed */
    uint64_t mask = (1ull << p->lg) - 1;
    uint64_t off = FMT_ARENA_OFF + p->chunk;
    uint64_t w;
    const struct fmt_record *r;
    int rc;
    for (uint64_t i = 0; (rc = table_next_live(s, a, t, &i, &w, &r)) != 0; i++) {
        if (rc < 0)
            return rc;
        if (r->type != FMT_PUT || fmt_record_crc(r) != r->crc)
            return MMKV_ECORRUPT;   /* never carry damage into the new file silently */
        uint64_t len = fmt_record_len(r->klen, r->vlen);
        if (off + len > p->tail)
            return MMKV_ECORRUPT;
        struct fmt_record *n = (struct fmt_record *)(b->base + off);
        memcpy(n, r, len);
        n->seq = ++seq;
        n->epoch = (uint32_t)epoch;
        n->flags = 0;       /* a copied record is no longer part of a batch */
        n->reserved2 = 0;
        n->crc = fmt_record_crc(n);
        uint64_t j = n->hash & mask;
        while (atomic_load_explicit(&slots[j], memory_order_relaxed) != FMT_EMPTY)
            j = (j + 1) & mask;
        atomic_store_explicit(&slots[j], fmt_slot_word(off, n->hash), memory_order_relaxed);
        off += len;
    }
    atomic_store(&bh->table_desc, fmt_desc(FMT_ARENA_OFF, p->lg));
    atomic_store(&bh->tail, off);
    atomic_store(&bh->file_size, p->size);
    atomic_store(&bh->count, p->live);
    atomic_store(&bh->table_used, p->live);
    atomic_store(&bh->seq, seq);
    atomic_store(&bh->epoch, epoch);
    bh->base_seq = seq;
    bh->base_off = off;
    atomic_store(&bh->published, off);
    atomic_store(&bh->synced_tail, off);
    atomic_store(&bh->dirty, 1);
    return 0;
}

/* Build B completely, on disk, holding nothing of B yet.  On success *out is B's gen. */
static int compact_build(mmkv_store *s, struct view *a, const char *tmp, struct gen **out)
{
    struct table t;
    struct compact_plan p = {0};
    int rc = table_get(s, a, atomic_load(&view_hdr(a)->table_desc), &t);
    if (rc == 0)
        rc = compact_measure(s, a, &t, &p);
    if (rc < 0)
        return rc;
    int fd = os_vt.open(tmp, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return fd;
    rc = os_vt.fchmod_like(a->g->fd, fd);
    if (rc == 0)
        rc = os_vt.fallocate(fd, 0, p.size);
    struct gen *g = rc == 0 ? store_gen_create(s, fd, p.size) : NULL;
    if (!g) {
        os_vt.close(fd);
        return rc < 0 ? rc : -ENOMEM;
    }
    struct view b;
    store_view(g, &b);
    rc = compact_fill(s, a, &t, &p, &b);
    if (rc == 0) {
        uint8_t boot[16];
        os_boot_id(boot);
        memcpy(view_hdr(&b)->boot_id, boot, 16);
        lock_init(g->lockpg, boot, g->dev, g->ino);
        /* B must be whole on disk before the rename can make it the store */
        rc = s->shm ? 0 : os_vt.fdatasync(fd);
    }
    if (rc == 0)
        rc = os_ofd_lock(fd, F_RDLCK, 0, 0);
    if (rc < 0) {
        store_gen_discard(g);
        return rc;
    }
    *out = g;
    return 0;
}

int compact_run(mmkv_store *s, struct view *v)
{
    struct fmt_header *h = view_hdr(v);
    if (atomic_load(&h->state) != FMT_ACTIVE)
        return 0;
    /* A rename replaces one name: the file's other hard links would keep naming the old
     * file, which is RETIRED at the end, and every open through them would fail. */
    int links = s->shm ? 1 : os_nlink(v->g->fd);
    if (links < 0)
        return links;
    if (links > 1)
        return MMKV_ELINKED;
    char tmp[PATH_MAX];
    uint64_t tag;
    os_random(&tag, sizeof(tag));
    tag |= 1;
    int rc = compact_tmp_path(s, tag, tmp, sizeof(tmp));
    if (rc < 0)
        return rc;
    atomic_store(&h->compact_tag, tag);
    compact_test_point(1);
    struct gen *g = NULL;
    rc = compact_build(s, v, tmp, &g);
    if (rc == 0) {
        compact_test_point(2);
        pthread_mutex_lock(&g->lockpg->mutex);
        /* RETIRING before the rename: a reader that finds A still ACTIVE cannot have missed
         * a write to B, and one that finds RETIRING looks at the path (see the top) */
        atomic_store_explicit(&h->state, FMT_RETIRING, memory_order_release);
        compact_test_point(3);
        rc = os_vt.rename(tmp, s->path);
        if (rc < 0) {
            atomic_store(&h->state, FMT_ACTIVE);
            pthread_mutex_unlock(&g->lockpg->mutex);
            store_gen_discard(g);
        }
    }
    if (rc < 0) {
        os_vt.unlink(tmp);
        atomic_store(&h->compact_tag, 0);
        return rc;
    }
    compact_test_point(4);
    /* the rename must be durable before the old file is declared dead */
    if (!s->shm)
        os_vt.fsync_dir(s->path);
    atomic_store_explicit(&h->state, FMT_RETIRED, memory_order_release);
    atomic_store(&h->compact_tag, 0);
    commit_notify(h);   /* watchers asleep on A move on to B */
    compact_test_point(5);
    struct fmt_lockpage *lp = g->lockpg;
    store_gen_install(s, g);
    pthread_mutex_unlock(&lp->mutex);
    return 0;
}

/* ---- automatic compaction: reported, and retried with a backoff ---- */

/* Called by a writer under the lock after its write.  A failure changes nothing in the
 * store; it is kept in s->compact_error (stats()["compaction_error"]) and the next attempt
 * on the same file waits until its garbage has grown by a quarter (at least 1 MiB), so a
 * lasting cause (a hard link, a full disk, a read-only directory) costs one attempt per
 * growth step, not one per write. */
void compact_auto(mmkv_store *s, struct view *v)
{
    uint64_t garbage = atomic_load(&view_hdr(v)->garbage);
    if (s->compact_retry_gen == v->g && garbage < s->compact_retry_garbage)
        return;
    int rc = compact_run(s, v);
    if (rc == 0) {
        s->compact_error = 0;
        s->compact_retry_gen = NULL;
        return;
    }
    s->compact_error = rc;
    s->compact_retry_gen = v->g;
    uint64_t step = garbage / 4 > (1ull << 20) ? garbage / 4 : (1ull << 20);
    s->compact_retry_garbage = garbage + step;
}
