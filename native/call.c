/* call.c - the two frames every exported call enters: the read frame and the write frame.
 *
 * What every call does
 * --------------------
 *   1. enter: refuse a closed handle (MMKV_ECLOSED) and a write on a read-only one
 *      (MMKV_ERDONLY); a write counts itself in the handle's `inflight` (close waits for it);
 *   2. pin the handle's current gen (map.c), so the file stays mapped for the whole call
 *      even if a compaction moves the handle meanwhile;
 *   3. arm the SIGBUS guard (guard.c): a file truncated underneath makes the call return
 *      MMKV_EFAULT instead of killing the interpreter;
 *   4. look at the file's state: a retired file (compacted away) sends the call to the file
 *      now at the path (store_switch), and it starts again there;
 *   5. write frame only: take the writer mutex (lock.c; MMKV_EWAIT after one slice of
 *      waiting, with nothing done), finish or clean up a compaction that a dead process
 *      left half done, run the operation, make it durable (durable=True, only if it wrote),
 *      compact if garbage dominates (never inside lock(): the holder keeps a mutex in the
 *      file), release the mutex;
 *      read frame: run the operation, which takes no lock and makes no system call;
 *   6. disarm, unpin, leave.
 * Invariants: the GIL stays held except inside wait_begin/wait_end brackets (wait.c), so
 * a read never waits for another thread; no call returns with the mutex held unless it is
 * lock()'s; a fault while holding the mutex finishes or undoes the write first.
 *
 * What happens when the file changes: the pin keeps the old mapping alive, so a call in
 * flight finishes on it; the next call finds RETIRED (or RETIRING and another inode at the
 * path) and moves.
 *
 * Limitation: the guard is a process-wide SIGBUS handler.  If a program installs its own
 * after mmkv (signal.signal(SIGBUS, ...)), every write, open, iteration start, stats() and
 * sync() puts mmkv's back first (one system call, which those afford); a read before the
 * next of those reaches a truncated file through the program's handler, and a handler that
 * returns makes the access fault again for ever.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* After a fault while holding the lock: undo or finish the write, release the lock.  Each
 * step is guarded again, since the mapping may be gone entirely. */
static int64_t call_finish_write(void *g)
{
    struct view v;
    store_view(g, &v);
    commit_recover(&v);
    return 0;
}

static int64_t call_unlock(void *g)
{
    struct view v = {.g = g};
    lock_release(&v);
    return 0;
}

static void call_fault_cleanup(struct gen *g)
{
    guard_run(call_finish_write, g);
    guard_run(call_unlock, g);
}

/* durable=True, under the lock after a write: one fdatasync.  The write's own record is
 * durable when it returns; synced_tail (which only serves to detect lost synced data after a
 * power loss) is advanced to what the previous durable write made durable, and reaches the
 * disk with this sync: it lags one write behind instead of costing a second sync. */
static int call_sync_locked(mmkv_store *s, struct view *v)
{
    if (s->shm)
        return 0;
    struct fmt_header *h = view_hdr(v);
    uint64_t t = atomic_load(&h->tail), mark = atomic_load(&h->sync_mark);
    if (mark <= t && atomic_load(&h->synced_tail) < mark)
        atomic_store(&h->synced_tail, mark);
    int rc = os_vt.fdatasync(v->g->fd);
    if (rc == 0)
        atomic_store(&h->sync_mark, t);
    return rc;
}

/* Has the store at the path moved to another file?  RETIRED says so; RETIRING (a
 * compaction between its rename and its last step) needs a look at the path. */
int store_moved(mmkv_store *s, struct gen *g, uint64_t state)
{
    if (state == FMT_RETIRED)
        return 1;
    if (state != FMT_RETIRING)
        return 0;
    uint64_t dev, ino;
    return os_vt.stat_ino(s->path, &dev, &ino) == 0 && (dev != g->dev || ino != g->ino);
}

static int call_is_current(mmkv_store *s, struct gen *g)
{
    pthread_mutex_lock(&s->switch_mu);
    int same = atomic_load(&s->gen) == g;
    pthread_mutex_unlock(&s->switch_mu);
    return same;
}

/* Move the handle from gen old to the file now at the path: the gen another handle of this
 * process already has for it, or a new one. */
int store_switch(mmkv_store *s, struct gen *old)
{
    if (!call_is_current(s, old))
        return 0;
    int fd = os_vt.open(s->path, s->readonly ? O_RDONLY : O_RDWR, 0);
    if (fd < 0)
        return fd;
    uint64_t size, dev, ino;
    int rc = os_vt.fstat_size(fd, &size, &dev, &ino);
    if (rc == 0 && dev == old->dev && ino == old->ino)
        rc = MMKV_ECORRUPT;   /* retired, yet still the file at the path: damage */
    if (rc < 0) {
        os_vt.close(fd);
        return rc;
    }
    struct gen *g = map_gen_find(dev, ino, s->readonly);
    if (g)
        os_vt.close(fd);
    else if ((rc = store_gen_open(s, fd, MMKV_OPEN_WRITE, &g)) < 0)
        return rc;
    if (!call_is_current(s, old)) {   /* another thread switched first */
        store_gen_unpin(g);
        return 0;
    }
    store_gen_install(s, g);
    return 0;
}

static int64_t call_guarded(mmkv_store *s, struct gen *g, store_op fn, void *ctx, int write,
                            int *again)
{
    sigjmp_buf env;
    volatile int locked = 0;
    if (sigsetjmp(env, 0)) {
        guard_disarm();
        wait_unwind();
        if (locked)
            call_fault_cleanup(g);
        int frozen = write ? os_file_frozen(g->fd) : 0;   /* chattr +i, +a: say EPERM */
        return frozen ? frozen : MMKV_EFAULT;
    }
    guard_arm(&env);
    struct view v;
    store_view(g, &v);
    int64_t rc = 0;
    uint64_t state = atomic_load_explicit(&view_hdr(&v)->state, memory_order_acquire);
    if (state != FMT_ACTIVE && store_moved(s, g, state)) {
        *again = 1;
        goto out;
    }
    uint64_t seq = 0;
    if (write) {
        rc = lock_acquire(s, &v);
        if (rc < 0)
            goto out;
        locked = 1;
        atomic_signal_fence(memory_order_seq_cst);
        struct fmt_header *h = view_hdr(&v);
        if (atomic_load(&h->state) != FMT_ACTIVE || atomic_load(&h->compact_tag) != 0)
            rc = compact_resolve(s, &v);
        if (rc == 1) {
            *again = 1;
            rc = 0;
        }
        seq = atomic_load(&h->seq);
    }
    if (!*again && rc >= 0)
        rc = fn(s, &v, ctx);
    if (write) {
        int wrote = atomic_load(&view_hdr(&v)->seq) != seq;
        if (rc >= 0 && !*again && s->durable && wrote) {
            int src = call_sync_locked(s, &v);
            if (src < 0)
                rc = src;
        }
        if (rc >= 0 && !*again && wrote && s->auto_compact && g->depth == 1 &&
            compact_wanted(&v)) {
            wait_begin();
            compact_auto(s, &v);  /* the write is done; a failure is kept for stats() */
            wait_end();
        }
        lock_release(&v);
        atomic_signal_fence(memory_order_seq_cst);
        locked = 0;
    }
out:
    guard_disarm();
    return rc;
}

/* Writes count themselves in `inflight`, so that close() returns only once the writes in
 * progress on other threads (perhaps waiting for the lock) are done.  Reads do not: they
 * cannot wait, their pin keeps the file mapped whatever close() does, and the handle's
 * memory lives as long as the Python object that makes the call. */
static int call_enter(mmkv_store *s, int write)
{
    if (!s)
        return MMKV_ECLOSED;
    if (!write)
        return atomic_load_explicit(&s->closed, memory_order_acquire) ? MMKV_ECLOSED : 0;
    atomic_fetch_add(&s->inflight, 1);
    int rc = 0;
    if (atomic_load(&s->closed))
        rc = MMKV_ECLOSED;
    else if (s->readonly)
        rc = MMKV_ERDONLY;
    if (rc < 0)
        atomic_fetch_sub(&s->inflight, 1);
    return rc;
}

static int64_t call_run(mmkv_store *s, store_op fn, void *ctx, int write)
{
    int64_t rc = call_enter(s, write);
    if (rc < 0)
        return rc;
    if (write)
        guard_reassert();   /* one system call; the read frame makes none (see the top) */
    for (int tries = 0;; tries++) {
        struct gen *g = store_gen_pin(s);
        if (!g) {
            rc = MMKV_ECLOSED;
            break;
        }
        int again = 0;
        rc = call_guarded(s, g, fn, ctx, write, &again);
        if (again)
            rc = tries < 100 ? store_switch(s, g) : MMKV_ECORRUPT;
        store_gen_unpin(g);
        if (!again || rc < 0)
            break;
    }
    if (write)
        atomic_fetch_sub(&s->inflight, 1);
    return rc;
}

int64_t call_read(mmkv_store *s, store_op fn, void *ctx)
{
    return call_run(s, fn, ctx, 0);
}

int64_t call_write(mmkv_store *s, store_op fn, void *ctx)
{
    return call_run(s, fn, ctx, 1);
}

struct call_plain_ctx {
    mmkv_store *s;
    struct gen *g;
    store_op fn;
    void *ctx;
};

static int64_t call_plain_guarded(void *arg)
{
    struct call_plain_ctx *c = arg;
    struct view v;
    store_view(c->g, &v);
    return c->fn(c->s, &v, c->ctx);
}

/* Pinned and guarded, on the current file as it is (no move, no lock). */
int64_t call_plain(mmkv_store *s, store_op fn, void *ctx)
{
    int64_t rc = call_enter(s, 0);
    if (rc < 0)
        return rc;
    struct gen *g = store_gen_pin(s);
    if (!g) {
        atomic_fetch_sub(&s->inflight, 1);
        return MMKV_ECLOSED;
    }
    struct call_plain_ctx c = {s, g, fn, ctx};
    rc = guard_run(call_plain_guarded, &c);
    store_gen_unpin(g);
    atomic_fetch_sub(&s->inflight, 1);
    return rc;
}
