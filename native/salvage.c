/* salvage.c - a read-only walk of any file, however damaged, resynchronising after damage:
 * every record that passes its checks (header bounds, lengths, CRC32C, sequence increasing),
 * in log order.  Used by `mmkv dump` on a damaged store; it never writes the file.
 */
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
