/* lock.c - the writer mutex: one robust, recursive, process-shared pthread mutex on the lock
 * page, which every process maps on its own 4 KiB mapping that never moves while the mutex
 * may be held (the kernel walks the robust list at the addresses the holder locked with).
 *
 * Lock recovery.  A holder that dies leaves FUTEX_OWNER_DIED; the next locker gets
 * EOWNERDEAD, rolls the dead writer's intent forward or back (commit_recover), and marks the
 * mutex consistent.  A mutex copied in a file (reboot, cp, backup) can name a dead thread
 * forever, so the first opener of a file reinitialises it (store.c decides when, using OFD
 * locks and the stamp {boot id, device, inode} kept beside the mutex).
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

void lock_init(struct fmt_lockpage *lp, const uint8_t boot[16], uint64_t dev, uint64_t ino)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    memset(&lp->mutex, 0, sizeof(lp->mutex));
    pthread_mutex_init(&lp->mutex, &attr);
    pthread_mutexattr_destroy(&attr);
    memcpy(lp->boot_id, boot, 16);
    lp->dev = dev;
    lp->ino = ino;
    lp->generation++;
    lp->magic = FMT_LOCK_MAGIC;
}

int lock_stamp_matches(const struct fmt_lockpage *lp, const uint8_t boot[16], uint64_t dev, uint64_t ino)
{
    return lp->magic == FMT_LOCK_MAGIC && memcmp(lp->boot_id, boot, 16) == 0 && lp->dev == dev &&
           lp->ino == ino;
}

/* Take the writer mutex of v's gen; on EOWNERDEAD finish the dead holder's write first.
 * The view is refreshed afterwards, since a writer may have grown the file meanwhile. */
int lock_acquire(mmkv_store *s, struct view *v)
{
    struct gen *g = v->g;
    int rc = pthread_mutex_lock(&g->lockpg->mutex);
    if (rc == EOWNERDEAD) {
        store_view(g, v);
        store_extend(s, v, 0);
        commit_recover(v);
        pthread_mutex_consistent(&g->lockpg->mutex);
        rc = 0;
    }
    if (rc == ENOTRECOVERABLE)
        return MMKV_ECORRUPT;
    if (rc != 0)
        return -rc;
    store_view(g, v);
    int erc = store_extend(s, v, 0);
    if (erc < 0) {
        pthread_mutex_unlock(&g->lockpg->mutex);
        return erc;
    }
    return 0;
}

void lock_release(struct view *v)
{
    pthread_mutex_unlock(&v->g->lockpg->mutex);
}
