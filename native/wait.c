/* wait.c - what a call does around a wait.  The core runs with the caller's GIL held (the
 * cffi preamble removes the GIL release cffi would wrap around every call), so a read
 * never waits for a switch interval behind a busy thread.  Where the core may block (a
 * contended writer mutex, fdatasync, fallocate, a compaction, close waiting for calls in
 * progress) it brackets the wait with wait_begin/wait_end, which call the hooks the
 * preamble installs at load: release the GIL, take it back.  Nothing here includes
 * Python.h; without hooks (a C caller) the brackets do nothing.
 *
 * Brackets nest (a compaction calls fdatasync); only the outermost pair calls the hooks.
 * A SIGBUS jump out of a bracket lands in a guard, which calls wait_unwind to take the GIL
 * back before returning to Python.
 */
#include "internal.h"

static void *(*wait_release_hook)(void);
static void (*wait_reacquire_hook)(void *);
static __thread int wait_depth;
static __thread void *wait_state;

void mmkv_set_wait_hooks(void *(*release)(void), void (*reacquire)(void *))
{
    wait_release_hook = release;
    wait_reacquire_hook = reacquire;
}

void wait_begin(void)
{
    if (wait_depth++ == 0 && wait_release_hook)
        wait_state = wait_release_hook();
}

void wait_end(void)
{
    if (wait_depth > 0 && --wait_depth == 0 && wait_reacquire_hook)
        wait_reacquire_hook(wait_state);
}

void wait_unwind(void)
{
    if (wait_depth > 0) {
        wait_depth = 1;
        wait_end();
    }
}
