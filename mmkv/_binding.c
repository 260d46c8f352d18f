/* _binding.c - the cffi preamble of mmkv._core: the only C that includes Python.h.
 *
 * It does three things:
 *   1. Keeps the GIL across every call.  cffi wraps each call in Py_BEGIN_ALLOW_THREADS /
 *      Py_END_ALLOW_THREADS; those are redefined to nothing here, so a read never gives the
 *      GIL away and never waits a switch interval behind a busy thread to get it back.
 *   2. Installs the wait hooks of the core (native/wait.c) when the module loads: the core
 *      releases the GIL itself, only around what may block (a contended lock, fdatasync,
 *      growth, compaction).
 *   3. Provides the hot operations in the module `mmkv._fast` (mmkv_py_install): the type
 *      Handle, the C base of Store, whose type slots are `d[k]`, `k in d`, `d[k] = v`,
 *      `del d[k]` and `len(d)`; and plain CPython functions (get, put, scan, get_many,
 *      set_many...) for the Python paths.  No cffi argument conversion, and a value is copied straight
 *      into the bytes object returned, so no buffer exists that a re-entrant call (a
 *      signal handler) could overwrite.
 * Everything here uses the stable ABI of Python 3.10 (the module is abi3).  Errors other
 * than a missing key go back to the Store's `_fail` (mmkv/_errors.py maps them), and keys
 * or values of a wrong type to its `_coerce`, so messages live in one place.
 */
#include "mmkv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
#define Py_BEGIN_ALLOW_THREADS {
#define Py_END_ALLOW_THREADS }

/* Part of the stable ABI since 3.10, hidden by cffi's unversioned Py_LIMITED_API. */
#ifndef METH_FASTCALL
#define METH_FASTCALL 0x0080
#endif
#ifndef METH_KEYWORDS
#define METH_KEYWORDS 0x0002
#endif
#if !defined(Py_LIMITED_API) || Py_LIMITED_API + 0 < 0x03040000
PyAPI_FUNC(void *) PyType_GetSlot(PyTypeObject *, int);   /* stable ABI since 3.4 */
#endif

void mmkv_set_wait_hooks(void *(*release)(void), void (*reacquire)(void *));
int mmkv_py_install(void);

static void *mmkv_py_release(void)
{
    return (void *)PyEval_SaveThread();
}

static void mmkv_py_reacquire(void *state)
{
    PyEval_RestoreThread((PyThreadState *)state);
}

__attribute__((constructor)) static void mmkv_py_install_hooks(void)
{
    mmkv_set_wait_hooks(mmkv_py_release, mmkv_py_reacquire);
}

/* Bytes of a key or value: bytes as they are, str as UTF-8, bytearray and memoryview
 * copied; anything else goes to store._coerce(obj, what), which raises the TypeError.
 * *owned is a new reference to release, or NULL. */
static int mmkv_py_bytes(PyObject *store, PyObject *obj, const char *what, PyObject **owned,
                         char **p, Py_ssize_t *n)
{
    *owned = NULL;
    if (!PyBytes_Check(obj)) {
        if (PyUnicode_Check(obj))
            obj = PyUnicode_AsUTF8String(obj);
        else if (PyByteArray_Check(obj) || PyObject_TypeCheck(obj, &PyMemoryView_Type))
            obj = PyBytes_FromObject(obj);
        else
            obj = PyObject_CallMethod(store, "_coerce", "Os", obj, what);
        if (!obj)
            return -1;
        *owned = obj;
    }
    return PyBytes_AsStringAndSize(obj, p, n);
}

static PyObject *mmkv_py_fail(PyObject *store, int64_t rc)
{
    PyObject *r = PyObject_CallMethod(store, "_fail", "L", (long long)rc);
    if (r) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_SystemError, "mmkv: _fail returned");
    }
    return NULL;
}

struct mmkv_py_value {
    PyObject *obj;
};

static char *mmkv_py_alloc(void *ctx, size_t len)
{
    struct mmkv_py_value *v = ctx;
    Py_XDECREF(v->obj);
    v->obj = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    return v->obj ? PyBytes_AsString(v->obj) : NULL;
}

static int mmkv_py_args(Py_ssize_t nargs, Py_ssize_t want, const char *name)
{
    if (nargs == want)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s takes %d arguments", name, (int)want);
    return -1;
}

/* The value of key in store s (the Store object `store`), or dflt when absent (NULL:
 * KeyError). */
static PyObject *mmkv_py_read(mmkv_store *s, PyObject *store, PyObject *key, PyObject *dflt)
{
    PyObject *owned;
    char *k;
    Py_ssize_t kn;
    if (mmkv_py_bytes(store, key, "key", &owned, &k, &kn) < 0)
        return NULL;
    struct mmkv_py_value v = {NULL};
    int64_t n = mmkv_get_alloc(s, k, (size_t)kn, mmkv_py_alloc, &v);
    Py_XDECREF(owned);
    if (n >= 0) {
        if (v.obj)
            return v.obj;
        return PyErr_NoMemory();
    }
    Py_XDECREF(v.obj);
    if (n == MMKV_ENOTFOUND) {
        if (dflt) {
            Py_INCREF(dflt);
            return dflt;
        }
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    }
    if (n == -ENOMEM && PyErr_Occurred())
        return NULL;
    return mmkv_py_fail(store, n);
}

/* get(addr, key, store[, default]): the value, or default if absent (KeyError without). */
static PyObject *mmkv_py_get(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (nargs != 3 && mmkv_py_args(nargs, 4, "get") < 0)
        return NULL;
    mmkv_store *s = PyLong_AsVoidPtr(args[0]);
    if (!s)
        return NULL;
    return mmkv_py_read(s, args[2], args[1], nargs == 4 ? args[3] : NULL);
}

/* Bytes per value get_many expects, from its last call (a hint only: a race on it costs at
 * most a second pass). */
#define MMKV_PY_HINT_MAX (1u << 20)
static size_t mmkv_py_value_hint = 128;

/* get_many(addr, keys, default, store) -> list of values (default where absent), all as of
 * one moment (mmkv_get_many), or the core's error code as an int (MMKV_EWAIT: the caller
 * waits for the lock and asks again).  keys: a list or tuple. */
static PyObject *mmkv_py_get_many(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (mmkv_py_args(nargs, 4, "get_many") < 0)
        return NULL;
    mmkv_store *s = PyLong_AsVoidPtr(args[0]);
    PyObject *seq = args[1], *dflt = args[2], *store = args[3], *out = NULL;
    if (!s)
        return NULL;
    Py_ssize_t n = PySequence_Size(seq);
    if (n < 0)
        return NULL;
    PyObject **keys = calloc((size_t)n + 1, sizeof(*keys));
    uint32_t *klens = calloc((size_t)n + 1, sizeof(*klens));
    int64_t *vlens = calloc((size_t)n + 1, sizeof(*vlens));
    char *packed = NULL, *buf = NULL;
    size_t total = 0, cap = 0, need = 0;
    if (!keys || !klens || !vlens) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_GetItem(seq, i), *owned;
        char *k;
        Py_ssize_t kn;
        if (!item)
            goto done;
        int rc = mmkv_py_bytes(store, item, "key", &owned, &k, &kn);
        if (rc == 0 && !owned) {
            owned = item;          /* bytes: keep the item itself */
            Py_INCREF(owned);
        }
        Py_DECREF(item);
        if (rc < 0)
            goto done;
        if ((uint64_t)kn > UINT32_MAX) {
            Py_DECREF(owned);
            PyErr_SetString(PyExc_ValueError, "key or value too large for this store");
            goto done;
        }
        keys[i] = owned;
        klens[i] = (uint32_t)kn;
        total += (size_t)kn;
    }
    packed = malloc(total + 1);
    if (!packed) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0, at = 0; i < n; at += klens[i], i++)
        memcpy(packed + at, PyBytes_AsString(keys[i]), klens[i]);
    /* sized from the values the last calls returned, so that one pass over the keys
     * usually suffices (a pass that runs out of room is a whole second pass) */
    cap = (size_t)n * mmkv_py_value_hint + 4096;
    int rc;
    for (;;) {
        free(buf);
        buf = malloc(cap);
        if (!buf) {
            PyErr_NoMemory();
            goto done;
        }
        rc = mmkv_get_many(s, packed, klens, (size_t)n, buf, cap, vlens, &need);
        if (rc != MMKV_EBUFSIZE)
            break;
        cap = need > 2 * cap ? need : 2 * cap;
    }
    if (rc == 0 && n > 0) {
        size_t used = 0;
        for (Py_ssize_t i = 0; i < n; i++)
            used += vlens[i] > 0 ? (size_t)vlens[i] : 0;
        size_t hint = used / (size_t)n + 16;
        mmkv_py_value_hint = hint < MMKV_PY_HINT_MAX ? hint : MMKV_PY_HINT_MAX;
    }
    if (rc < 0) {
        out = PyLong_FromLong(rc);
        goto done;
    }
    out = PyList_New(n);
    for (Py_ssize_t i = 0, at = 0; out && i < n; i++) {
        PyObject *v = dflt;
        if (vlens[i] >= 0) {
            v = PyBytes_FromStringAndSize(buf + at, (Py_ssize_t)vlens[i]);
            at += vlens[i];
        } else {
            Py_INCREF(v);
        }
        if (!v) {
            Py_CLEAR(out);
            break;
        }
        PyList_SetItem(out, i, v);   /* steals */
    }
done:
    if (keys)
        for (Py_ssize_t i = 0; i < n; i++)
            Py_XDECREF(keys[i]);
    free(keys);
    free(klens);
    free(vlens);
    free(packed);
    free(buf);
    return out;
}

/* ---- mmkv._fast.Handle: the C base class of Store ----
 *
 * Store derives from it, so `d[k]`, `k in d`, `d[k] = v`, `del d[k]`, `len(d)` and `d.get`
 * go from the interpreter's type slots straight into the core: no Python frame, no method
 * lookup, no attribute read for the handle, which sits in the object itself (`_addr`, set
 * by Store.__init__).  A write that must wait for the lock (MMKV_EWAIT) or that failed goes
 * back to the Store's Python `_put_failed` / `_del_failed`, which wait and raise. */

typedef struct {
    PyObject_HEAD
    mmkv_store *s;
} mmkv_py_handle;

static mmkv_store *mmkv_py_h(PyObject *self)
{
    mmkv_store *s = ((mmkv_py_handle *)self)->s;
    if (!s)
        PyErr_SetString(PyExc_ValueError, "mmkv: this Store was never opened");
    return s;
}

static PyObject *mmkv_py_h_subscript(PyObject *self, PyObject *key)
{
    mmkv_store *s = mmkv_py_h(self);
    return s ? mmkv_py_read(s, self, key, NULL) : NULL;
}

/* Arguments of get(key, default=None), as Mapping.get takes them: positional or by name.
 * 0 with *key and *dflt set, or -1 with TypeError. */
static int mmkv_py_get_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                            PyObject **key, PyObject **dflt)
{
    Py_ssize_t nkw = kwnames ? PyTuple_Size(kwnames) : 0;
    PyObject *slot[2] = {nargs > 0 ? args[0] : NULL, nargs > 1 ? args[1] : Py_None};
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError, "get expected at most 2 arguments, got %zd", nargs + nkw);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GetItem(kwnames, i);   /* borrowed */
        int at = PyUnicode_CompareWithASCIIString(name, "key") == 0       ? 0
                 : PyUnicode_CompareWithASCIIString(name, "default") == 0 ? 1
                                                                          : -1;
        if (at < 0 || at < nargs) {
            PyErr_Format(PyExc_TypeError, at < 0 ? "get() got an unexpected keyword argument %R"
                                                 : "get() got multiple values for argument %R",
                         name);
            return -1;
        }
        slot[at] = args[nargs + i];
    }
    if (!slot[0]) {
        PyErr_SetString(PyExc_TypeError, "get() missing required argument 'key'");
        return -1;
    }
    *key = slot[0];
    *dflt = slot[1];
    return 0;
}

static PyObject *mmkv_py_h_get(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    PyObject *key, *dflt;
    if (kwnames || nargs < 1 || nargs > 2) {
        if (mmkv_py_get_args(args, nargs, kwnames, &key, &dflt) < 0)
            return NULL;
    } else {
        key = args[0];
        dflt = nargs == 2 ? args[1] : Py_None;
    }
    mmkv_store *s = mmkv_py_h(self);
    return s ? mmkv_py_read(s, self, key, dflt) : NULL;
}

static int mmkv_py_h_contains(PyObject *self, PyObject *key)
{
    mmkv_store *s = mmkv_py_h(self);
    PyObject *owned;
    char *k;
    Py_ssize_t kn;
    if (!s || mmkv_py_bytes(self, key, "key", &owned, &k, &kn) < 0)
        return -1;
    int rc = mmkv_contains(s, k, (size_t)kn);
    Py_XDECREF(owned);
    if (rc < 0) {
        mmkv_py_fail(self, rc);
        return -1;
    }
    return rc;
}

static Py_ssize_t mmkv_py_h_length(PyObject *self)
{
    mmkv_store *s = mmkv_py_h(self);
    if (!s)
        return -1;
    int64_t n = mmkv_count(s);
    if (n < 0) {
        mmkv_py_fail(self, n);
        return -1;
    }
    return (Py_ssize_t)n;
}

/* What Store's Python side makes of a write the core did not finish: wait and retry
 * (MMKV_EWAIT) or raise.  0 when it ended well, -1 with the exception set. */
static int mmkv_py_h_failed(PyObject *self, const char *method, int rc, PyObject *key,
                            PyObject *value)
{
    PyObject *r = value ? PyObject_CallMethod(self, method, "iOO", rc, key, value)
                        : PyObject_CallMethod(self, method, "iO", rc, key);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int mmkv_py_h_ass_subscript(PyObject *self, PyObject *key, PyObject *value)
{
    mmkv_store *s = mmkv_py_h(self);
    PyObject *kowned, *vowned = NULL;
    char *k, *v = NULL;
    Py_ssize_t kn, vn = 0;
    if (!s || mmkv_py_bytes(self, key, "key", &kowned, &k, &kn) < 0)
        return -1;
    if (value && mmkv_py_bytes(self, value, "value", &vowned, &v, &vn) < 0) {
        Py_XDECREF(kowned);
        return -1;
    }
    int rc = value ? mmkv_put(s, k, (size_t)kn, v, (size_t)vn) : mmkv_delete(s, k, (size_t)kn);
    Py_XDECREF(kowned);
    Py_XDECREF(vowned);
    if (rc == 0)
        return 0;
    return value ? mmkv_py_h_failed(self, "_put_failed", rc, key, value)
                 : mmkv_py_h_failed(self, "_del_failed", rc, key, NULL);
}

static PyObject *mmkv_py_h_addr(PyObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromVoidPtr(((mmkv_py_handle *)self)->s);
}

static int mmkv_py_h_set_addr(PyObject *self, PyObject *value, void *closure)
{
    (void)closure;
    if (!value || ((mmkv_py_handle *)self)->s) {   /* set once, by Store.__init__ */
        PyErr_SetString(PyExc_AttributeError, "_addr is set once and never deleted");
        return -1;
    }
    void *p = PyLong_AsVoidPtr(value);
    if (!p && PyErr_Occurred())
        return -1;
    ((mmkv_py_handle *)self)->s = p;
    return 0;
}

static void mmkv_py_h_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(self);
    Py_DECREF(tp);   /* a heap type's instance holds a reference to it */
}

static PyMethodDef mmkv_py_h_methods[] = {
    {"get", (PyCFunction)(void (*)(void))mmkv_py_h_get, METH_FASTCALL | METH_KEYWORDS,
     "get($self, /, key, default=None)\n--\n\n"
     "D.get(k[, d]) -> D[k] if k in D, else d (default None)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef mmkv_py_h_getset[] = {
    {"_addr", mmkv_py_h_addr, mmkv_py_h_set_addr, "the core's handle, as an int", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot mmkv_py_h_slots[] = {
    {Py_tp_doc, (void *)"The C base of mmkv.Store: its reads and writes by key."},
    {Py_tp_dealloc, mmkv_py_h_dealloc},
    {Py_tp_methods, mmkv_py_h_methods},
    {Py_tp_getset, mmkv_py_h_getset},
    {Py_mp_subscript, mmkv_py_h_subscript},
    {Py_mp_ass_subscript, mmkv_py_h_ass_subscript},
    {Py_mp_length, mmkv_py_h_length},
    {Py_sq_contains, mmkv_py_h_contains},
    {0, NULL},
};

static PyType_Spec mmkv_py_h_spec = {
    "mmkv._fast.Handle", sizeof(mmkv_py_handle), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, mmkv_py_h_slots,
};

/* contains(addr, key, store) -> bool */
static PyObject *mmkv_py_contains(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (mmkv_py_args(nargs, 3, "contains") < 0)
        return NULL;
    mmkv_store *s = PyLong_AsVoidPtr(args[0]);
    PyObject *owned;
    char *k;
    Py_ssize_t kn;
    if (!s || mmkv_py_bytes(args[2], args[1], "key", &owned, &k, &kn) < 0)
        return NULL;
    int rc = mmkv_contains(s, k, (size_t)kn);
    Py_XDECREF(owned);
    if (rc < 0)
        return mmkv_py_fail(args[2], rc);
    return PyBool_FromLong(rc);
}

/* put(addr, key, value, store) -> None, or the core's error code (the caller waits for the
 * lock on MMKV_EWAIT and raises the others). */
static PyObject *mmkv_py_put(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (mmkv_py_args(nargs, 4, "put") < 0)
        return NULL;
    mmkv_store *s = PyLong_AsVoidPtr(args[0]);
    PyObject *kowned, *vowned;
    char *k, *v;
    Py_ssize_t kn, vn;
    if (!s || mmkv_py_bytes(args[3], args[1], "key", &kowned, &k, &kn) < 0)
        return NULL;
    if (mmkv_py_bytes(args[3], args[2], "value", &vowned, &v, &vn) < 0) {
        Py_XDECREF(kowned);
        return NULL;
    }
    int rc = mmkv_put(s, k, (size_t)kn, v, (size_t)vn);
    Py_XDECREF(kowned);
    Py_XDECREF(vowned);
    if (rc == 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(rc);
}

/* delete(addr, key, store) -> None, or the core's error code (MMKV_ENOTFOUND, MMKV_EWAIT...) */
static PyObject *mmkv_py_delete(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (mmkv_py_args(nargs, 3, "delete") < 0)
        return NULL;
    mmkv_store *s = PyLong_AsVoidPtr(args[0]);
    PyObject *owned;
    char *k;
    Py_ssize_t kn;
    if (!s || mmkv_py_bytes(args[2], args[1], "key", &owned, &k, &kn) < 0)
        return NULL;
    int rc = mmkv_delete(s, k, (size_t)kn);
    Py_XDECREF(owned);
    if (rc == 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(rc);
}

/* set_many(addr, keys, values, store) -> None, or the core's error code (MMKV_EWAIT: the
 * lock is busy and nothing was written; the caller waits on its own path).  keys and
 * values: lists of the same length, at least one pair; every key and value is converted
 * (mmkv_py_bytes) before anything is written. */
static PyObject *mmkv_py_set_many(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (mmkv_py_args(nargs, 4, "set_many") < 0)
        return NULL;
    mmkv_store *s = PyLong_AsVoidPtr(args[0]);
    PyObject *lists[2] = {args[1], args[2]}, *store = args[3], *out = NULL;
    if (!s)
        return NULL;
    Py_ssize_t n = PyList_Size(lists[0]);
    if (n < 0 || PyList_Size(lists[1]) != n) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "set_many: as many values as keys");
        return NULL;
    }
    PyObject **held = calloc(2 * (size_t)n + 1, sizeof(*held));
    uint32_t *lens = calloc(2 * (size_t)n + 1, sizeof(*lens));
    uint32_t *klens = malloc((size_t)n * sizeof(*klens) + 1);
    uint32_t *vlens = malloc((size_t)n * sizeof(*vlens) + 1);
    char *data = NULL;
    size_t total = 0;
    if (!held || !lens || !klens || !vlens) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < 2 * n; i++) {
        PyObject *item = PyList_GetItem(lists[i % 2], i / 2), *owned;   /* borrowed */
        char *p;
        Py_ssize_t len;
        if (!item)
            goto done;
        Py_INCREF(item);   /* _coerce runs Python code, which could change the lists */
        int rc = mmkv_py_bytes(store, item, i % 2 ? "value" : "key", &owned, &p, &len);
        if (rc == 0 && !owned) {
            owned = item;
            Py_INCREF(owned);
        }
        Py_DECREF(item);
        if (rc < 0)
            goto done;
        held[i] = owned;
        if ((uint64_t)len > UINT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "key or value too large for this store");
            goto done;
        }
        lens[i] = (uint32_t)len;
        total += (size_t)len;
    }
    data = malloc(total + 1);
    if (!data) {
        PyErr_NoMemory();
        goto done;
    }
    size_t at = 0;
    for (Py_ssize_t i = 0; i < 2 * n; at += lens[i], i++) {
        memcpy(data + at, PyBytes_AsString(held[i]), lens[i]);
        (i % 2 ? vlens : klens)[i / 2] = lens[i];
    }
    int rc = mmkv_set_many(s, data, klens, vlens, (size_t)n);
    if (rc == 0) {
        Py_INCREF(Py_None);
        out = Py_None;
    } else {
        out = PyLong_FromLong(rc);
    }
done:
    if (held)
        for (Py_ssize_t i = 0; i < 2 * n; i++)
            Py_XDECREF(held[i]);
    free(held);
    free(lens);
    free(klens);
    free(vlens);
    free(data);
    return out;
}

struct mmkv_py_batch {
    PyObject *list;
};

static int mmkv_py_entry(void *ctx, size_t klen, size_t vlen, char **kdst, char **vdst)
{
    struct mmkv_py_batch *b = ctx;
    PyObject *k = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)klen), *item = k;
    if (!k)
        return -1;
    *kdst = PyBytes_AsString(k);
    if (vdst) {
        PyObject *v = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)vlen);
        item = v ? PyTuple_New(2) : NULL;
        if (!item) {
            Py_DECREF(k);
            Py_XDECREF(v);
            return -1;
        }
        *vdst = PyBytes_AsString(v);
        PyTuple_SetItem(item, 0, k);   /* steals */
        PyTuple_SetItem(item, 1, v);
    }
    int rc = PyList_Append(b->list, item);
    Py_DECREF(item);
    return rc;
}

/* scan(iter_addr, desc, pos, end, with_values, max, store) -> (entries, done, current, pos):
 * one batch of mmkv_iter_scan_cb as a list of keys or (key, value) tuples. */
static PyObject *mmkv_py_scan(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (mmkv_py_args(nargs, 7, "scan") < 0)
        return NULL;
    mmkv_iter *it = PyLong_AsVoidPtr(args[0]);
    uint64_t desc = PyLong_AsUnsignedLongLong(args[1]);
    uint64_t pos = PyLong_AsUnsignedLongLong(args[2]);
    uint64_t end = PyLong_AsUnsignedLongLong(args[3]);
    int with_values = PyObject_IsTrue(args[4]);
    size_t max = PyLong_AsSize_t(args[5]);
    if (!it || PyErr_Occurred())
        return NULL;
    struct mmkv_py_batch b = {PyList_New(0)};
    if (!b.list)
        return NULL;
    size_t n = 0;
    uint64_t current = 0;
    int rc = mmkv_iter_scan_cb(it, desc, &pos, end, max, with_values, mmkv_py_entry, &b, &n,
                               &current);
    if (rc < 0) {
        Py_DECREF(b.list);
        if (rc == -ENOMEM && PyErr_Occurred())
            return NULL;
        return mmkv_py_fail(args[6], rc);
    }
    return Py_BuildValue("(NOKK)", b.list, rc == 1 ? Py_True : Py_False,
                         (unsigned long long)current, (unsigned long long)pos);
}

/* Set each function of defs as an attribute of module m.  0 or -1. */
static int mmkv_py_add(PyObject *m, PyMethodDef *defs)
{
    for (PyMethodDef *d = defs; d->ml_name; d++) {
        PyObject *f = PyCFunction_NewEx(d, NULL, NULL);
        int rc = f ? PyObject_SetAttrString(m, d->ml_name, f) : -1;
        Py_XDECREF(f);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static PyMethodDef mmkv_py_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))mmkv_py_scan, METH_FASTCALL,
     "scan(iter_addr, desc, pos, end, with_values, max, store)"},
    {"get", (PyCFunction)(void (*)(void))mmkv_py_get, METH_FASTCALL,
     "get(addr, key, store[, default])"},
    {"contains", (PyCFunction)(void (*)(void))mmkv_py_contains, METH_FASTCALL,
     "contains(addr, key, store)"},
    {"put", (PyCFunction)(void (*)(void))mmkv_py_put, METH_FASTCALL,
     "put(addr, key, value, store)"},
    {"delete", (PyCFunction)(void (*)(void))mmkv_py_delete, METH_FASTCALL,
     "delete(addr, key, store)"},
    {"get_many", (PyCFunction)(void (*)(void))mmkv_py_get_many, METH_FASTCALL,
     "get_many(addr, keys, default, store)"},
    {"set_many", (PyCFunction)(void (*)(void))mmkv_py_set_many, METH_FASTCALL,
     "set_many(addr, keys, values, store)"},
    {NULL, NULL, 0, NULL},
};

/* Create the module mmkv._fast (in sys.modules) holding the functions above and the type
 * Handle.  0 or -1. */
int mmkv_py_install(void)
{
    PyObject *m = PyImport_AddModule("mmkv._fast");   /* borrowed */
    if (!m || mmkv_py_add(m, mmkv_py_methods) < 0)
        return -1;
    PyObject *t = PyType_FromSpec(&mmkv_py_h_spec);
    int rc = t ? PyObject_SetAttrString(m, "Handle", t) : -1;
    Py_XDECREF(t);
    return rc;
}
