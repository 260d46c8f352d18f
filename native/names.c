/* names.c - the names of temporary files beside a store.
 *
 * "n", compaction and restore build a new file beside the store and rename it over the
 * store's name, so the temporary must live in the same directory (same file system: the
 * rename is atomic).  Its name must fit NAME_MAX (255 bytes) whatever the store's own name
 * is, so it never embeds that name: it is `.mmkv-<16 hex digits>.<kind>`, 28 bytes at most.
 * The hex digits are a random tag (compaction stores it in the old file's header so that a
 * later locker can remove a temporary whose compactor died).
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int names_tmp_beside(const char *path, const char *kind, uint64_t tag, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;   /* keeps the '/' */
    int n = snprintf(out, cap, "%.*s.mmkv-%016llx.%s", (int)dirlen, path,
                     (unsigned long long)tag, kind);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}
