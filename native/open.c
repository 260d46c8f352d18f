/* open.c - opening and closing a handle: the flags, a new store's first bytes, first-opener
 * detection with OFD locks, lock reinitialisation, recovery (intent roll-forward after a
 * crash, the log scan after a possible power loss), the gens a handle opens, and fork.
 *
 * Lock recovery at open.  Every handle holds a read OFD lock on byte 0 for its life.  A
 * writer that can take the write lock on byte 0 is alone: no live process holds the mutex,
 * so it reinitialises it (a mutex copied in a file may name a dead thread forever) and runs
 * recovery, then downgrades.  A writer that is not alone compares the lock page's stamp
 * {boot id, device, inode} under the init lock (byte 1) and reinitialises on a mismatch.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static mmkv_store *registry;


static void open_registry_add(mmkv_store *s)
{
    pthread_mutex_lock(&registry_mu);
    s->next_open = registry;
    registry = s;
    pthread_mutex_unlock(&registry_mu);
}

static void open_registry_remove(mmkv_store *s)
{
    pthread_mutex_lock(&registry_mu);
    for (mmkv_store **p = &registry; *p; p = &(*p)->next_open)
        if (*p == s) {
            *p = s->next_open;
            break;
        }
    pthread_mutex_unlock(&registry_mu);
}

/* Write a new empty store into fd (a zero-length file we hold exclusively). */
static int open_format(int fd, const struct mmkv_options *opt)
{
    unsigned lg = (unsigned)table_initial_lg(opt ? opt->initial_capacity : 0);
    uint64_t chunk = fmt_table_chunk_len(lg), tail = FMT_ARENA_OFF + chunk;
    uint64_t size = (tail + (64ull << 10) + (64ull << 10) - 1) & ~((64ull << 10) - 1);
    int rc = sparse_allocate_new(fd, FMT_ARENA_OFF, chunk, size);   /* a big table: a hole */
    if (rc < 0) {
        os_vt.ftruncate(fd, 0);
        return rc;
    }
    uint8_t *page = calloc(1, FMT_ARENA_OFF + FMT_TABLE_SLOTS_OFF);
    if (!page)
        return -ENOMEM;
    struct fmt_header *h = (struct fmt_header *)page;
    memcpy(h->magic, FMT_MAGIC, 8);
    h->version = FMT_VERSION;
    h->page_size = FMT_PAGE;
    os_random(h->uuid, 16);
    os_random(h->sipkey, 16);
    h->created_ns = os_now_ns();
    h->max_key_len = opt && opt->max_key_len ? opt->max_key_len : FMT_DEFAULT_KLEN;
    h->max_value_len = opt && opt->max_value_len ? opt->max_value_len : FMT_DEFAULT_VLEN;
    h->hdr_crc = fmt_header_crc(h);
    atomic_store(&h->table_desc, fmt_desc(FMT_ARENA_OFF, lg));
    atomic_store(&h->tail, tail);
    atomic_store(&h->file_size, size);
    atomic_store(&h->seq, 1);
    atomic_store(&h->epoch, 1);
    atomic_store(&h->synced_tail, tail);
    struct fmt_record *r = (struct fmt_record *)(page + FMT_ARENA_OFF);
    fmt_table_init(r, lg, 1, 1);   /* the slots stay zero: the file is new */
    rc = os_vt.pwrite(fd, page, FMT_ARENA_OFF + FMT_TABLE_SLOTS_OFF, 0);
    free(page);
    /* the first bytes must be on disk before the file can be renamed into place (flag "n")
     * or used: a crash would otherwise leave a path naming an empty or half-written header */
    if (rc == 0)
        rc = os_vt.fdatasync(fd);
    return rc;
}

/* flag "n": build the new store beside the path and rename it over whatever is there, so
 * the path holds either the old file or a whole new store, never a half-written one. */
static int open_create_new(const char *path, unsigned mode, const struct mmkv_options *opt)
{
    char tmp[PATH_MAX];
    uint64_t rnd;
    int old = os_vt.open(path, O_RDONLY, 0);
    if (old >= 0) {   /* a rename would replace only one of the file's names */
        int links = os_nlink(old);
        os_vt.close(old);
        if (links > 1)
            return MMKV_ELINKED;
    }
    os_random(&rnd, sizeof(rnd));
    if (names_tmp_beside(path, "new", rnd, tmp, sizeof(tmp)) < 0)   /* short: fits NAME_MAX */
        return -ENAMETOOLONG;
    int fd = os_vt.open(tmp, O_RDWR | O_CREAT | O_EXCL, mode);
    if (fd < 0)
        return fd;
    int rc = open_format(fd, opt);
    os_vt.close(fd);
    if (rc == 0)
        rc = os_vt.rename(tmp, path);
    if (rc < 0) {
        os_vt.unlink(tmp);
        return rc;
    }
    /* the rename must reach the disk before anyone relies on the new store */
    os_vt.fsync_dir(path);
    return 0;
}

static int open_read_header(int fd, struct fmt_header *h, uint64_t size)
{
    if (size < FMT_ARENA_OFF + FMT_TABLE_SLOTS_OFF)
        return MMKV_ENOTSTORE;
    int rc = os_pread_all(fd, h, sizeof(*h), 0);
    return rc < 0 ? rc : fmt_header_validate(h);
}

/* The mutable header words, checked once at open (readers check again on every use). */
static int open_validate(mmkv_store *s, struct view *v)
{
    struct fmt_header *h = view_hdr(v);
    uint64_t tail = atomic_load(&h->tail), size = atomic_load(&h->file_size);
    if (tail < FMT_ARENA_OFF || tail > size || (tail & 7))
        return MMKV_ECORRUPT;
    struct table t;
    int rc = table_get(s, v, atomic_load(&h->table_desc), &t);
    if (rc < 0)
        return rc;
    if (t.off + FMT_TABLE_SLOTS_OFF + t.cap * 8 > tail || atomic_load(&h->count) > t.cap)
        return MMKV_ECORRUPT;
    return 0;
}

/* First opener (no other handle anywhere): the mutex may name a dead thread or come from
 * another machine, so make it new; finish what crashed writers left. */
static int open_recover_alone(mmkv_store *s, struct view *v, const uint8_t boot[16],
                               int power_loss)
{
    struct gen *g = v->g;
    struct fmt_header *h = view_hdr(v);
    lock_init(g->lockpg, boot, g->dev, g->ino);
    int rc = 0;
    if (power_loss) {
        /* trust only the log; a grow whose size did not reach the disk is forgotten */
        if (atomic_load(&h->file_size) > v->len)
            atomic_store(&h->file_size, v->len);
        rc = recover_scan(s, v);
    } else {
        commit_recover(v);                /* a process crash: the page cache is intact */
    }
    if (rc < 0)
        return rc;
    if (atomic_load(&h->compact_tag) || atomic_load(&h->state) != FMT_ACTIVE)
        compact_resolve(s, v);
    memcpy(h->boot_id, boot, 16);
    atomic_store(&h->dirty, 1);
    atomic_store(&h->watchers, 0);   /* alone: any registered watcher died with its process */
    return 0;
}

static int open_attach_locks(mmkv_store *s, struct view *v, int alone, int power_loss)
{
    uint8_t boot[16];
    os_boot_id(boot);
    if (alone)
        return open_recover_alone(s, v, boot, power_loss);
    /* Others have it open.  If none of them is a writer of this boot, the mutex may be
     * stale: reinitialise it under the init lock (byte 1), which every writer takes here. */
    struct gen *g = v->g;
    int rc = os_ofd_lock(g->fd, F_WRLCK, 1, 1);
    if (rc < 0)
        return rc;
    if (!lock_stamp_matches(g->lockpg, boot, g->dev, g->ino)) {
        lock_init(g->lockpg, boot, g->dev, g->ino);
        commit_recover(v);
    }
    os_ofd_lock(g->fd, F_UNLCK, 1, 0);
    return 0;
}

struct open_attach_ctx {
    mmkv_store *s;
    struct gen *g;
    uint64_t size;
    int alone, power_loss;
};

static int64_t open_attach_mapped(void *arg)
{
    struct open_attach_ctx *c = arg;
    struct gen *g = c->g;
    int rc = map_gen_map(g, c->size);
    struct view v;
    if (rc == 0) {
        store_view(g, &v);
        if (!c->power_loss)   /* after a power loss only the log counts; checked after the scan */
            rc = open_validate(c->s, &v);
    }
    if (rc == 0 && !g->readonly)
        rc = open_attach_locks(c->s, &v, c->alone, c->power_loss);
    if (rc == 0 && !g->readonly)
        rc = open_validate(c->s, &v);
    return rc;
}

static int open_attach_guarded(mmkv_store *s, struct gen *g, uint64_t size, int alone,
                                int power_loss)
{
    struct open_attach_ctx c = {s, g, size, alone, power_loss};
    return (int)guard_run(open_attach_mapped, &c);
}

/* Was the machine restarted while the file was open (dirty, another boot)?  Then the page
 * cache may have lost writes that had not been synced: a possible power loss. */
static int open_power_lost(const mmkv_store *s, const struct fmt_header *h)
{
    uint8_t boot[16];
    os_boot_id(boot);
    return !s->shm && atomic_load(&((struct fmt_header *)h)->dirty) && memcmp(h->boot_id, boot, 16) != 0;
}

/* Liveness: every handle holds a read OFD lock on byte 0 for its life.  A writer that can
 * take the write lock on byte 0 is alone; it initialises or recovers, then downgrades.
 * Others wait on the read lock until that is done.  On success *out owns fd; on failure
 * fd is closed. */
static int open_attach(mmkv_store *s, int fd, int flag, const struct mmkv_options *opt,
                        struct gen **out)
{
    struct gen *g = map_gen_new(fd, s->readonly, s->shm);
    if (!g) {
        os_vt.close(fd);
        return -ENOMEM;
    }
    int alone = 0, rc = 0;
    if (!s->readonly) {
        rc = os_ofd_lock(fd, F_WRLCK, 0, 0);
        alone = rc == 0;
        rc = rc == -EAGAIN ? 0 : rc;
    }
    if (rc == 0 && !alone)
        rc = os_ofd_lock(fd, F_RDLCK, 0, 1);
    uint64_t size = 0;
    if (rc == 0)
        rc = os_vt.fstat_size(fd, &size, &g->dev, &g->ino);
    if (rc == 0 && size == 0 && alone && flag == MMKV_OPEN_CREATE) {
        rc = open_format(fd, opt);
        if (rc == 0)
            rc = os_vt.fstat_size(fd, &size, &g->dev, &g->ino);
    }
    struct fmt_header h;
    if (rc == 0)
        rc = open_read_header(fd, &h, size);
    /* A writer grows the file before it publishes the new file_size, so the size measured
     * after reading the header is at least what that header says, unless the file was
     * really cut short. */
    if (rc == 0)
        rc = os_vt.fstat_size(fd, &size, &g->dev, &g->ino);
    uint64_t fsize = rc == 0 ? atomic_load(&h.file_size) : 0;
    int power_loss = rc == 0 && alone && !s->readonly && open_power_lost(s, &h);
    if (power_loss && fsize > size)
        fsize = size & ~(uint64_t)(FMT_PAGE - 1);   /* a grow that never reached the disk */
    if (rc == 0 && (fsize > size || fsize < FMT_ARENA_OFF + FMT_PAGE || (fsize & (FMT_PAGE - 1))))
        rc = MMKV_ECORRUPT;
    if (rc == 0) {
        memcpy(g->sipkey, h.sipkey, 16);
        g->max_klen = h.max_key_len;
        g->max_vlen = h.max_value_len;
        rc = open_attach_guarded(s, g, fsize, alone, power_loss);
    }
    if (rc == 0 && alone)
        rc = os_ofd_lock(fd, F_RDLCK, 0, 0);
    if (rc < 0) {
        store_gen_discard(g);
        return rc;
    }
    *out = g;
    return 0;
}

int store_gen_open(mmkv_store *s, int fd, int flag, struct gen **out)
{
    return open_attach(s, fd, flag, NULL, out);
}

static int open_check_options(int flag, const struct mmkv_options *opt)
{
    if (flag < MMKV_OPEN_READ || flag > MMKV_OPEN_NEW)
        return MMKV_EINVAL;
    if (!opt)
        return 0;
    if (opt->max_key_len > FMT_MAX_KLEN || opt->max_value_len > FMT_MAX_VLEN)
        return MMKV_EINVAL;
    if (opt->initial_capacity > ((1ull << FMT_MAX_CAP_LG) * 7) / 10)
        return MMKV_EINVAL;
    return 0;
}

static int open_resolve_path(const char *path, int shm, char *real, size_t cap)
{
    if (shm)
        return os_shm_path(path, real, cap);
    if (path[0] == 0)
        return -ENOENT;
    if (strlen(path) >= cap)
        return -ENAMETOOLONG;
    strcpy(real, path);
    return 0;
}

static void open_free_struct(mmkv_store *s)
{
    pthread_mutex_destroy(&s->switch_mu);
    free(s->path);
    free(s);
}

/* The gen for the file fd names: the one another handle of this process has (fd is then
 * closed), or a new one attached to the store (recovery, lock checks). */
static int open_gen_for(mmkv_store *s, int fd, int flag, const struct mmkv_options *opt,
                        struct gen **out)
{
    uint64_t size, dev, ino;
    int rc = os_vt.fstat_size(fd, &size, &dev, &ino);
    if (rc < 0) {
        os_vt.close(fd);
        return rc;
    }
    if (size > 0 && (*out = map_gen_find(dev, ino, s->readonly)) != NULL) {
        os_vt.close(fd);
        return 0;
    }
    return open_attach(s, fd, flag, opt, out);
}

int mmkv_open(const char *path, int flag, unsigned mode, const struct mmkv_options *opt,
              mmkv_store **out)
{
    *out = NULL;
    int shm = (flag & MMKV_OPEN_SHM) != 0;
    flag &= 0xff;
    char real[PATH_MAX];
    int rc = open_check_options(flag, opt);
    if (rc == 0)
        rc = guard_install();
    if (rc == 0)
        guard_reassert();
    if (rc == 0)
        rc = open_resolve_path(path, shm, real, sizeof(real));
    if (rc < 0)
        return rc;
    mmkv_store *s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(real))) {
        free(s);
        return -ENOMEM;
    }
    s->shm = shm;
    s->readonly = flag == MMKV_OPEN_READ;
    s->durable = opt ? opt->durable : 0;
    s->auto_compact = opt ? !opt->no_auto_compact : 1;
    s->mode = mode;
    pthread_mutex_init(&s->switch_mu, NULL);
    if (flag == MMKV_OPEN_NEW) {
        rc = open_create_new(real, mode, opt);
        flag = MMKV_OPEN_WRITE;
    }
    int fd = -1;
    if (rc == 0) {
        int oflags = (s->readonly ? O_RDONLY : O_RDWR) | (flag == MMKV_OPEN_CREATE ? O_CREAT : 0);
        rc = fd = os_vt.open(real, oflags, mode);
    }
    struct gen *g = NULL;
    if (rc >= 0)
        rc = open_gen_for(s, fd, flag, opt, &g);
    if (rc < 0) {
        open_free_struct(s);
        return rc;
    }
    s->max_klen = g->max_klen;
    s->max_vlen = g->max_vlen;
    store_gen_install(s, g);
    open_registry_add(s);
    *out = s;
    return 0;
}

/* Wait for calls in progress on other threads (they may be waiting for the lock with the
 * GIL released), sleeping rather than spinning. */
static void open_wait_idle(mmkv_store *s)
{
    if (atomic_load(&s->inflight) == 0)
        return;
    wait_begin();
    while (atomic_load(&s->inflight) > 0)
        os_pause();
    wait_end();
}

int mmkv_close(mmkv_store *s)
{
    if (!s || atomic_load(&s->closed))
        return 0;
    if (s->user_locks > 0 && s->lock_token == lock_token() && s->lock_gen &&
        lock_held_by_me(s->lock_gen))
        return MMKV_EBUSY;
    if (atomic_exchange(&s->closed, 1))
        return 0;
    open_wait_idle(s);
    open_registry_remove(s);
    pthread_mutex_lock(&s->switch_mu);
    struct gen *g = atomic_exchange(&s->gen, NULL);
    pthread_mutex_unlock(&s->switch_mu);
    if (g)
        store_gen_unpin(g);   /* the last handle of the process on the file closes it */
    return 0;
}

/* Freed while its own thread holds lock() through it: release that first (the lock()
 * pin keeps the lock page mapped; the guard covers a file truncated underneath). */
static int64_t open_drop_user_locks(void *arg)
{
    while (lock_user_drop(arg) == 0)
        ;
    return 0;
}

void mmkv_free(mmkv_store *s)
{
    if (!s)
        return;
    if (mmkv_close(s) == MMKV_EBUSY) {
        guard_run(open_drop_user_locks, s);
        mmkv_close(s);
    }
    open_free_struct(s);
}

void mmkv_after_fork_child(void)
{
    /* The child has only the forking thread: no call is in progress on any handle, no
     * thread of the child holds a process-local mutex or lock() through a handle. */
    pthread_mutex_init(&registry_mu, NULL);
    for (mmkv_store *s = registry; s; s = s->next_open) {
        pthread_mutex_init(&s->switch_mu, NULL);
        atomic_store(&s->inflight, 0);
        s->user_locks = 0;
        s->lock_gen = NULL;
    }
    map_after_fork_child();
    os_after_fork_child();
}
