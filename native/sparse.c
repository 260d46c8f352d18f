/* sparse.c - a large initial table takes disk space only as it fills.
 *
 * A new store's table chunk holds `capacity` 8-byte slots; with initial_capacity=150e6 it is
 * 2 GiB of zeros that a fresh store does not need yet.  So a new store whose chunk is at
 * least SPARSE_MIN_CHUNK leaves the chunk's slot pages as a hole (only the header, the lock
 * page, the table record's first page and the spare space after the chunk are allocated).
 *
 * The hazard of a hole in a mapped file is the first store into one of its pages: the
 * kernel allocates the block at the page fault, and on a full disk it answers with SIGBUS.
 * So a writer about to publish into an EMPTY slot of such a table first makes sure the
 * slot's page is allocated: when every word of the page is still EMPTY (slots never return
 * to EMPTY in a live table, so a page with any other word was written before), it
 * fallocates that one page, under the lock and before the write's intent, so that ENOSPC
 * refuses the write cleanly.  Not on tmpfs (shared memory, /dev/shm): there even a read of
 * a hole allocates a page, so a reader could fault on a full file system; such a store is
 * allocated whole at creation, and a size that does not fit is ENOSPC at open.  Rebuilt tables (in the allocated log) and compacted files
 * (allocated whole) never have holes; the check costs them a scan of one page at most.
 */
#include "internal.h"

#include <string.h>

#define SPARSE_MIN_CHUNK (16ull << 20)

int sparse_allocate_new(int fd, uint64_t toff, uint64_t chunk, uint64_t size)
{
    if (chunk < SPARSE_MIN_CHUNK || !os_holes_free_to_read(fd))
        return os_vt.fallocate(fd, 0, size);
    uint64_t first = toff + FMT_PAGE, end = toff + chunk;
    int rc = os_vt.fallocate(fd, 0, first);
    if (rc == 0 && size > end)
        rc = os_vt.fallocate(fd, end, size - end);   /* also sets the file's size */
    if (rc == 0 && size <= end)
        rc = os_vt.ftruncate(fd, size);
    return rc;
}

int sparse_slot_ready(struct view *v, uint64_t slot_off)
{
    uint64_t desc = atomic_load(&view_hdr(v)->table_desc);
    if (fmt_desc_off(desc) != FMT_ARENA_OFF || fmt_table_chunk_len(fmt_desc_lg(desc)) < SPARSE_MIN_CHUNK)
        return 0;
    uint64_t page = slot_off & ~(uint64_t)(FMT_PAGE - 1);
    if (page < FMT_ARENA_OFF + FMT_PAGE || page + FMT_PAGE > v->len)
        return 0;   /* the chunk's first page is allocated at creation */
    const _Atomic uint64_t *w = (const _Atomic uint64_t *)(v->base + page);
    for (size_t i = 0; i < FMT_PAGE / 8; i++)
        if (atomic_load_explicit(&w[i], memory_order_relaxed) != FMT_EMPTY)
            return 0;
    return os_vt.fallocate(v->g->fd, page, FMT_PAGE);
}
