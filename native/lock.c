/* lock.c - the writer mutex: one robust, process-shared pthread mutex on the lock page,
 * which every process maps on its own 4 KiB mapping that never moves while the mutex may be
 * held (the kernel walks the robust list at the addresses the holder locked with).
 *
 * Ownership
 * ---------
 * The lock belongs to a thread, for the whole process: every handle on the same file shares
 * one gen (map.c), and the gen records which thread of this process holds the mutex (a
 * token unique for the life of the process, never a recycled thread id) and how deeply.  A
 * call by the holder, through any handle, recurses on that count; any other thread goes to
 * the mutex and waits like another process.  The mutex itself is a *normal* robust mutex:
 * glibc's recursive type decides recursion by comparing thread ids, which collide across
 * PID namespaces (two containers' PID 1), and would let a second container's thread walk
 * into a held lock.  The holder's {PID namespace inode, tid} goes to the lock page for
 * reports.
 *
 * Waiting
 * -------
 * A contended lock is waited for in slices (LOCK_SLICE_NS) with the GIL released (wait.c);
 * after a slice the call returns MMKV_EWAIT having done nothing, and the binding calls again
 * after running signal handlers and checking the caller's timeout.  So Ctrl-C reaches a
 * waiting thread within a slice and an interrupted wait holds nothing.
 *
 * Lock recovery
 * -------------
 * A holder that dies (a killed process, or a thread that ended holding lock()) leaves
 * FUTEX_OWNER_DIED; the next locker gets EOWNERDEAD, rolls the dead writer's intent
 * forward or back (commit_recover), and marks the mutex consistent.  If the dead holder
 * was a thread of this process, its in-process bookkeeping (depth, lock() pin) is dropped
 * too.  A mutex copied in a file (reboot, cp, backup) can name a dead thread forever, so
 * the first opener of a file reinitialises it (open.c decides when, using OFD locks and the
 * stamp {boot id, device, inode} kept beside the mutex).
 *
 * Limitation: the kernel's robust-list walk at a thread's exit compares thread ids, so a
 * process killed while *waiting* for the mutex at the instant its tid equals the holder's
 * tid in another PID namespace could mark the mutex as dead-owned.  Two namespaces' tids
 * must coincide and the kill must land inside the glibc lock call for that to happen.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <string.h>

#define LOCK_SLICE_NS (10ull * 1000 * 1000)

static _Atomic uint64_t lock_next_token = 1;
static __thread uint64_t lock_self;

void lock_init(struct fmt_lockpage *lp, const uint8_t boot[16], uint64_t dev, uint64_t ino)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_NORMAL);
    memset(&lp->mutex, 0, sizeof(lp->mutex));
    pthread_mutex_init(&lp->mutex, &attr);
    pthread_mutexattr_destroy(&attr);
    memcpy(lp->boot_id, boot, 16);
    lp->dev = dev;
    lp->ino = ino;
    lp->generation++;
    atomic_store(&lp->owner_ns, 0);
    atomic_store(&lp->owner_tid, 0);
    lp->magic = FMT_LOCK_MAGIC;
}

int lock_stamp_matches(const struct fmt_lockpage *lp, const uint8_t boot[16], uint64_t dev, uint64_t ino)
{
    return lp->magic == FMT_LOCK_MAGIC && memcmp(lp->boot_id, boot, 16) == 0 && lp->dev == dev &&
           lp->ino == ino;
}

uint64_t lock_token(void)
{
    if (!lock_self)
        lock_self = atomic_fetch_add(&lock_next_token, 1);
    return lock_self;
}

int lock_held_by_me(const struct gen *g)
{
    return atomic_load_explicit(&((struct gen *)g)->owner, memory_order_relaxed) == lock_token();
}

/* A thread of this process ended holding the mutex: forget its depth, drop its lock() pin
 * (the caller's own pin keeps the gen alive). */
static void lock_forget_dead_holder(struct gen *g)
{
    if (g->user_depth)
        atomic_fetch_sub(&g->refs, 1);
    g->user_depth = 0;
    g->depth = 0;
}

static int lock_take_mutex(struct gen *g)
{
    int rc = pthread_mutex_trylock(&g->lockpg->mutex);
    if (rc == EBUSY) {
        wait_begin();
        rc = os_mutex_wait(&g->lockpg->mutex, LOCK_SLICE_NS);
        wait_end();
    }
    return rc;
}

/* Take the writer mutex of v's gen; on EOWNERDEAD finish the dead holder's write first.
 * The view is refreshed afterwards, since a writer may have grown the file meanwhile.
 * MMKV_EWAIT: another thread or process holds it and one slice has passed. */
int lock_acquire(mmkv_store *s, struct view *v)
{
    struct gen *g = v->g;
    uint64_t me = lock_token();
    if (atomic_load_explicit(&g->owner, memory_order_relaxed) == me) {
        g->depth++;
    } else {
        int rc = lock_take_mutex(g);
        if (rc == ETIMEDOUT)
            return MMKV_EWAIT;
        if (rc == ENOTRECOVERABLE)
            return MMKV_ECORRUPT;
        if (rc != 0 && rc != EOWNERDEAD)
            return -rc;
        if (atomic_load(&g->owner) != 0)
            lock_forget_dead_holder(g);
        if (rc == EOWNERDEAD) {
            store_view(g, v);
            store_extend(s, v, 0);
            commit_recover(v);
            pthread_mutex_consistent(&g->lockpg->mutex);
        }
        atomic_store_explicit(&g->owner, me, memory_order_relaxed);
        g->depth = 1;
        uint64_t ns, tid;
        os_thread_identity(&ns, &tid);
        atomic_store_explicit(&g->lockpg->owner_ns, ns, memory_order_relaxed);
        atomic_store_explicit(&g->lockpg->owner_tid, tid, memory_order_relaxed);
    }
    store_view(g, v);
    int erc = store_extend(s, v, 0);
    if (erc < 0) {
        lock_release(v);
        return erc;
    }
    return 0;
}

void lock_release(struct view *v)
{
    struct gen *g = v->g;
    if (g->depth > 1) {
        g->depth--;
        return;
    }
    g->depth = 0;
    atomic_store_explicit(&g->lockpg->owner_tid, 0, memory_order_relaxed);
    atomic_store_explicit(&g->lockpg->owner_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&g->owner, 0, memory_order_relaxed);
    pthread_mutex_unlock(&g->lockpg->mutex);
}

/* The lock just acquired is lock()'s: count it on the gen (the first level pins the gen, so
 * its lock page stays mapped while held, whatever happens to the handle) and the handle. */
int lock_user_take(mmkv_store *s, struct view *v)
{
    struct gen *g = v->g;
    if (g->user_depth++ == 0)
        atomic_fetch_add(&g->refs, 1);
    s->user_locks++;
    s->lock_token = lock_token();
    s->lock_gen = g;
    return 0;
}

int lock_user_drop(mmkv_store *s)
{
    struct gen *g = s->lock_gen;
    if (!g || s->user_locks <= 0 || s->lock_token != lock_token() || !lock_held_by_me(g) ||
        g->user_depth == 0)
        return MMKV_ENOTLOCKED;
    s->user_locks--;
    int unpin = --g->user_depth == 0;
    struct view v = {.g = g};
    lock_release(&v);
    if (unpin)
        store_gen_unpin(g);
    return 0;
}
