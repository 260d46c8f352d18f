/* map.c - the mapping of a store's file, its growth, and the gens: one per open file per
 * process, shared by every handle on that file.
 *
 * One mapping per file per process
 * --------------------------------
 * Handles on the same file (same device and inode, same access) in one process share one
 * gen: one descriptor, one mapping, one lock page, and the in-process state of the writer
 * mutex (lock.c).  So ten thousand stores cost ten thousand small mappings, twenty
 * thousand handles on one store cost one, and the lock belongs to a thread whichever
 * handle it goes through.  The registry below finds a gen by (device, inode, read-only);
 * a read-only and a writable handle on one file get two gens (the mappings differ in
 * protection), which is harmless: read-only gens never touch the mutex.
 *
 * Growth and remapping
 * --------------------
 * A gen reserves address space in proportion to its file (four times its size, at least
 * 1 MiB) and maps the file at the start of it.  When the file grows (header.file_size,
 * published by the writer after fallocate) a call maps the new part in place (MAP_FIXED
 * inside the reservation), so addresses never move under other threads.  A file that
 * outgrows its reservation gets a new, larger one; the old one stays mapped as long as the
 * gen, so pointers taken from it stay valid (it maps the same file pages).  Reservations
 * grow geometrically, so the old ones add at most a third to the address space in use.
 * Readers extend lazily, only when a slot points past their mapping; writers before writing.
 *
 * Lifetime
 * --------
 * A gen is counted: each handle whose current file it is, each call and iterator that
 * pinned it, and a lock() holder.  Pins go through the handle's switch_mu, so a gen cannot
 * be freed between loading the handle's pointer and counting it; the count reaches zero
 * only under the registry mutex, so a lookup never revives a dying gen.  The last user marks
 * the file clean if it is the last opener anywhere, then unmaps and closes it.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#define MAP_MIN_RESERVE (1ull << 20)

static pthread_mutex_t map_registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct gen *map_registry;

void store_view(struct gen *g, struct view *v)
{
    struct mapping *m = atomic_load_explicit(&g->map, memory_order_acquire);
    v->base = m->base;
    v->len = atomic_load_explicit(&m->len, memory_order_acquire);
    v->g = g;
}

static struct mapping *map_new_mapping(struct gen *g, uint64_t size)
{
    uint64_t want = size * 4 > MAP_MIN_RESERVE ? size * 4 : MAP_MIN_RESERVE;
    struct mapping *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    for (; want >= size && want >= FMT_PAGE; want /= 2) {
        m->base = os_reserve(want);
        if (m->base)
            break;
    }
    if (!m->base || os_map_fixed(m->base, size, g->fd, 0, !g->readonly) < 0) {
        if (m->base)
            os_unmap(m->base, want);
        free(m);
        return NULL;
    }
    m->reserved_len = want;
    atomic_store(&m->len, size);
    return m;
}

/* Map the file up to header.file_size (and at least `need` bytes, else ECORRUPT: something
 * points past the allocated file).  The file may be shorter than the header says if it was
 * truncated underneath; only what exists is mapped. */
int store_extend(mmkv_store *s, struct view *v, uint64_t need)
{
    (void)s;
    if (need && need <= v->len)
        return 0;
    struct gen *g = v->g;
    uint64_t target = atomic_load_explicit(&view_hdr(v)->file_size, memory_order_acquire);
    if (need > target)
        return MMKV_ECORRUPT;
    int rc = 0;
    pthread_mutex_lock(&g->map_mu);
    struct mapping *m = atomic_load(&g->map);
    uint64_t have = atomic_load(&m->len);
    if (target > have) {
        uint64_t size, dev, ino;
        rc = os_vt.fstat_size(g->fd, &size, &dev, &ino);
        if (rc == 0 && target > size)
            target = size & ~(uint64_t)(FMT_PAGE - 1);
        if (rc == 0 && need > target)
            rc = MMKV_EFAULT;
    }
    if (rc == 0 && target > have) {
        if (target <= m->reserved_len) {
            rc = os_map_fixed(m->base + have, target - have, g->fd, have, !g->readonly);
            if (rc == 0)
                atomic_store_explicit(&m->len, target, memory_order_release);
        } else {
            struct mapping *n = map_new_mapping(g, target);
            if (!n) {
                rc = -ENOMEM;
            } else {
                n->older = m;
                atomic_store_explicit(&g->map, n, memory_order_release);
            }
        }
    }
    pthread_mutex_unlock(&g->map_mu);
    store_view(g, v);
    if (rc == 0 && need > v->len)
        rc = MMKV_EFAULT;
    return rc;
}

struct gen *map_gen_new(int fd, int readonly, int shm)
{
    struct gen *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->fd = fd;
    g->readonly = readonly;
    g->shm = shm;
    atomic_store(&g->refs, 1);
    pthread_mutex_init(&g->map_mu, NULL);
    return g;
}

/* Map [0, size) of the file and, for a writer, the lock page on its own. */
int map_gen_map(struct gen *g, uint64_t size)
{
    struct mapping *m = map_new_mapping(g, size);
    if (!m)
        return -ENOMEM;
    atomic_store(&g->map, m);
    if (!g->readonly) {
        g->lockpg = os_map(FMT_PAGE, g->fd, FMT_LOCK_OFF, 1);
        if (!g->lockpg)
            return -errno;
    }
    return 0;
}

/* The last opener anywhere (it can take the write lock on byte 0) marks the file clean,
 * after a sync: a clean file needs no recovery scan even after a reboot. */
static int64_t map_mark_clean_guarded(void *arg)
{
    struct gen *g = arg;
    struct mapping *m = atomic_load(&g->map);
    if (!m || g->readonly || os_ofd_lock(g->fd, F_WRLCK, 0, 0) != 0)
        return 0;
    struct fmt_header *h = (struct fmt_header *)m->base;
    /* data first, then the clean mark: a clean mark on disk before the data would let the
     * next boot skip the scan over a log that lost its tail */
    if (atomic_load(&h->state) == FMT_ACTIVE && (g->shm || os_vt.fdatasync(g->fd) == 0)) {
        atomic_store(&h->synced_tail, atomic_load(&h->tail));
        atomic_store(&h->dirty, 0);
        if (!g->shm)
            os_vt.fdatasync(g->fd);
    }
    return 0;
}

static void map_mark_clean(struct gen *g)
{
    guard_run(map_mark_clean_guarded, g);
}

static void map_gen_free(struct gen *g, int last_user)
{
    if (last_user && g->fd >= 0)
        map_mark_clean(g);
    struct mapping *m = atomic_load(&g->map);
    while (m) {
        struct mapping *older = m->older;
        os_unmap(m->base, m->reserved_len);
        free(m);
        m = older;
    }
    if (g->lockpg)
        os_unmap(g->lockpg, FMT_PAGE);
    if (g->fd >= 0)
        os_vt.close(g->fd);
    pthread_mutex_destroy(&g->map_mu);
    free(g);
}

/* A gen that never became a store's file (a failed open or compaction). */
void store_gen_discard(struct gen *g)
{
    map_gen_free(g, 0);
}

struct gen *map_gen_find(uint64_t dev, uint64_t ino, int readonly)
{
    pthread_mutex_lock(&map_registry_mu);
    struct gen *g = map_registry;
    for (; g; g = g->next)
        if (g->dev == dev && g->ino == ino && g->readonly == readonly) {
            atomic_fetch_add(&g->refs, 1);
            break;
        }
    pthread_mutex_unlock(&map_registry_mu);
    return g;
}

void map_gen_register(struct gen *g)
{
    pthread_mutex_lock(&map_registry_mu);
    if (!g->registered) {
        g->registered = 1;
        g->next = map_registry;
        map_registry = g;
    }
    pthread_mutex_unlock(&map_registry_mu);
}

struct gen *store_gen_pin(mmkv_store *s)
{
    pthread_mutex_lock(&s->switch_mu);
    struct gen *g = atomic_load_explicit(&s->gen, memory_order_relaxed);
    if (g)
        atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&s->switch_mu);
    return g;
}

void store_gen_unpin(struct gen *g)
{
    long r = atomic_load_explicit(&g->refs, memory_order_relaxed);
    while (r > 1)
        if (atomic_compare_exchange_weak(&g->refs, &r, r - 1))
            return;
    /* maybe the last reference: drop it under the registry mutex, so that no lookup can
     * count the gen again once it reached zero */
    pthread_mutex_lock(&map_registry_mu);
    int last = atomic_fetch_sub(&g->refs, 1) == 1;
    if (last && g->registered)
        for (struct gen **p = &map_registry; *p; p = &(*p)->next)
            if (*p == g) {
                *p = g->next;
                break;
            }
    pthread_mutex_unlock(&map_registry_mu);
    if (last)
        map_gen_free(g, 1);
}

/* Make g (whose reference the caller hands over) the handle's current gen; on a handle that
 * close() has emptied meanwhile (a read moving to a compacted file), just drop g. */
void store_gen_install(mmkv_store *s, struct gen *g)
{
    map_gen_register(g);
    pthread_mutex_lock(&s->switch_mu);
    struct gen *old = NULL;
    if (atomic_load(&s->closed) && !atomic_load(&s->gen))
        old = g;
    else
        old = atomic_exchange(&s->gen, g);
    pthread_mutex_unlock(&s->switch_mu);
    if (old)
        store_gen_unpin(old);
}

/* A gen for a file that compaction is about to fill: mapped, lock page mapped. */
struct gen *store_gen_create(mmkv_store *s, int fd, uint64_t size)
{
    struct gen *g = map_gen_new(fd, 0, s->shm);
    if (!g)
        return NULL;
    uint64_t st_size;
    if (os_vt.fstat_size(fd, &st_size, &g->dev, &g->ino) < 0 || map_gen_map(g, size) < 0) {
        g->fd = -1;
        store_gen_discard(g);
        return NULL;
    }
    struct gen *cur = atomic_load(&s->gen);
    memcpy(g->sipkey, cur->sipkey, 16);
    g->max_klen = cur->max_klen;
    g->max_vlen = cur->max_vlen;
    return g;
}

/* Give the child its own open file description, with its own read OFD lock.  The one it
 * inherited is shared with the parent: a lock change on it (the last-closer test takes the
 * write lock) would act for both, and it would outlive the parent's close. */
static void map_fork_reopen(struct gen *g)
{
    if (g->fd < 0)
        return;
    int fd = os_reopen(g->fd, g->readonly);
    if (fd < 0)
        return;
    if (os_ofd_lock(fd, F_RDLCK, 0, 1) == 0)
        os_replace_fd(fd, g->fd);
    os_vt.close(fd);
}

/* In the child after fork(): the child has only the forking thread.  No thread of it holds
 * a mutex: not the store's (the parent's holder is still the parent's), not the process-
 * local ones (a parent thread may have held one at the fork), and no lock() pin is its. */
void map_after_fork_child(void)
{
    pthread_mutex_init(&map_registry_mu, NULL);
    for (struct gen *g = map_registry; g; g = g->next) {
        pthread_mutex_init(&g->map_mu, NULL);
        atomic_store(&g->owner, 0);
        g->depth = 0;
        if (g->user_depth && atomic_load(&g->refs) > 1)
            atomic_fetch_sub(&g->refs, 1);
        g->user_depth = 0;
        map_fork_reopen(g);
    }
}
