/* guard.c - the SIGBUS guard.  A store's file can be truncated behind our back (another
 * program, a full disk on a copy-on-write filesystem); touching a mapped page past the new
 * end of file raises SIGBUS, which would kill the interpreter.  Each call into the core that
 * touches the mapping arms a thread-local sigjmp_buf; the handler jumps back to it and the
 * call returns MMKV_EFAULT.  A SIGBUS with no guard armed in the faulting thread goes to the
 * handler that was installed before ours (faulthandler, or the default action).
 *
 * Cost: sigsetjmp(env, 0) saves no signal mask (no system call, ~10 ns); SA_NODEFER keeps
 * SIGBUS unblocked after the jump.  The signal fences stop the compiler from moving the
 * guard's store past the first access it protects.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

static __thread sigjmp_buf *guard_env;
static struct sigaction guard_prev;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;
static int guard_rc;

static void guard_handler(int sig, siginfo_t *info, void *uctx)
{
    sigjmp_buf *env = guard_env;
    if (env) {
        guard_env = NULL;
        siglongjmp(*env, 1);
    }
    if (guard_prev.sa_flags & SA_SIGINFO) {
        if (guard_prev.sa_sigaction) {
            guard_prev.sa_sigaction(sig, info, uctx);
            return;
        }
    } else if (guard_prev.sa_handler != SIG_DFL && guard_prev.sa_handler != SIG_IGN) {
        guard_prev.sa_handler(sig);
        return;
    }
    /* default action: restore it; returning re-executes the access, which then kills */
    signal(sig, SIG_DFL);
}

static void guard_do_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = guard_handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    guard_rc = sigaction(SIGBUS, &sa, &guard_prev) < 0 ? -errno : 0;
}

int guard_install(void)
{
    pthread_once(&guard_once, guard_do_install);
    return guard_rc;
}

/* Put the guard back in front if a handler installed after ours replaced it (a Python
 * signal.signal(SIGBUS, ...) handler returns, and the access faults again for ever).  The
 * replaced handler becomes the one we chain to.  One system call: writes, opens and
 * iteration starts afford it, reads do not (see call.c for what that leaves). */
void guard_reassert(void)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = guard_handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &old) < 0)
        return;
    if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == guard_handler)
        return;
    guard_prev = old;
}

/* The one guard block: run fn(ctx) with the guard armed; fn's result, or MMKV_EFAULT if
 * the mapping faulted (after taking the GIL back if the fault came inside a wait).  Only
 * the write frame (call.c), which must also clean up a write, has a block of its own. */
int64_t guard_run(int64_t (*fn)(void *ctx), void *ctx)
{
    sigjmp_buf env;
    if (sigsetjmp(env, 0)) {
        guard_disarm();
        wait_unwind();
        return MMKV_EFAULT;
    }
    guard_arm(&env);
    int64_t rc = fn(ctx);
    guard_disarm();
    return rc;
}

void guard_arm(sigjmp_buf *env)
{
    guard_env = env;
    atomic_signal_fence(memory_order_seq_cst);
}

void guard_disarm(void)
{
    atomic_signal_fence(memory_order_seq_cst);
    guard_env = NULL;
}
