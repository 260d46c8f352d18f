/* snapshot.c - placeholder (filled below) */
#include "internal.h"
