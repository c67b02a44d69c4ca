/* One span's OTLP protobuf bytes, written in C: the optional fast path of otlp_encode.SpanBytes.
 *
 * Writing spans into protobuf was two thirds of what the export thread spent on a request (in
 * process: ~10 of ~15 us for a request's two spans; the rest is building their values). The
 * bytes are the same as the Python writer's, field for field (tests/telemetry/test_otlp_encode.py
 * checks both against each other and against the OpenTelemetry SDK's encoder). Built when the
 * package is installed with a C compiler at hand; without one, otlp_encode uses its Python writer.
 *
 * span_message(trace_id, span_id, parent_span_id, flags, name, kind, start, end, group,
 *              attributes, events, status_code, description) -> bytes
 *
 * returns the Span as a ScopeSpans `spans` field (tag 0x12, length, body). `parent_span_id` 0 means
 * no parent; `kind` is the wire value; `group` is already-encoded attribute fields (a deployment's
 * fixed ones) written before `attributes`; `events` is a sequence of (name, attributes, time_ns).
 * Field numbers are from opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Most spans fit in `first` (on the stack); a larger one moves to the heap. */
typedef struct {
    unsigned char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    unsigned char first[4096];
} Buffer;

static int reserve(Buffer *b, Py_ssize_t more) {
    if (b->len + more <= b->cap) {
        return 0;
    }
    Py_ssize_t cap = b->cap;
    while (cap < b->len + more) {
        cap *= 2;
    }
    unsigned char *data = b->data == b->first ? PyMem_Malloc((size_t)cap) : PyMem_Realloc(b->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (b->data == b->first) {
        memcpy(data, b->first, (size_t)b->len);
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int put(Buffer *b, const void *bytes, Py_ssize_t n) {
    if (reserve(b, n) < 0) {
        return -1;
    }
    memcpy(b->data + b->len, bytes, (size_t)n);
    b->len += n;
    return 0;
}

static int put_byte(Buffer *b, unsigned char byte) { return put(b, &byte, 1); }

static int varint_size(uint64_t value) {
    int n = 1;
    while (value >= 0x80) {
        value >>= 7;
        n++;
    }
    return n;
}

static void varint_at(unsigned char *out, uint64_t value) {
    while (value >= 0x80) {
        *out++ = (unsigned char)((value & 0x7F) | 0x80);
        value >>= 7;
    }
    *out = (unsigned char)value;
}

static int put_varint(Buffer *b, uint64_t value) {
    int n = varint_size(value);
    if (reserve(b, n) < 0) {
        return -1;
    }
    varint_at(b->data + b->len, value);
    b->len += n;
    return 0;
}

static int put_fixed64(Buffer *b, uint64_t value) {
    unsigned char out[8];
    for (int i = 0; i < 8; i++) {
        out[i] = (unsigned char)(value >> (8 * i));
    }
    return put(b, out, 8);
}

static int put_big_endian64(Buffer *b, uint64_t value) {
    unsigned char out[8];
    for (int i = 0; i < 8; i++) {
        out[i] = (unsigned char)(value >> (56 - 8 * i));
    }
    return put(b, out, 8);
}

/* A length-delimited field is written body first: `open_field` writes the tag and returns where the
 * body starts; `close_field` then moves the body up to make room for its length. Bodies are small
 * (an attribute, an event, a span), so the move costs little. */
static Py_ssize_t open_field(Buffer *b, unsigned char tag) {
    if (put_byte(b, tag) < 0) {
        return -1;
    }
    return b->len;
}

static int close_field(Buffer *b, Py_ssize_t start) {
    Py_ssize_t body = b->len - start;
    int n = varint_size((uint64_t)body);
    if (reserve(b, n) < 0) {
        return -1;
    }
    memmove(b->data + start + n, b->data + start, (size_t)body);
    varint_at(b->data + start, (uint64_t)body);
    b->len += n;
    return 0;
}

static int put_text(Buffer *b, unsigned char tag, PyObject *text) {
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &size);
    if (utf8 == NULL) {
        return -1;
    }
    if (put_byte(b, tag) < 0 || put_varint(b, (uint64_t)size) < 0) {
        return -1;
    }
    return put(b, utf8, size);
}

static int put_object_text(Buffer *b, unsigned char tag, PyObject *value) {
    PyObject *text = PyObject_Str(value);
    if (text == NULL) {
        return -1;
    }
    int result = put_text(b, tag, text);
    Py_DECREF(text);
    return result;
}

/* An AnyValue message body, as otlp_encode._any writes it. */
static int put_any(Buffer *b, PyObject *value) {
    if (PyUnicode_Check(value)) {
        return put_text(b, 0x0A, value);
    }
    if (PyBool_Check(value)) {
        unsigned char out[2] = {0x10, value == Py_True ? 1 : 0};
        return put(b, out, 2);
    }
    if (PyLong_Check(value)) {
        int overflow = 0;
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (number == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (overflow) {  /* past int64: as text, as the Python writer does */
            return put_object_text(b, 0x0A, value);
        }
        if (put_byte(b, 0x18) < 0) {
            return -1;
        }
        return put_varint(b, (uint64_t)number);
    }
    if (PyFloat_Check(value)) {
        double real = PyFloat_AS_DOUBLE(value);
        uint64_t bits;
        memcpy(&bits, &real, 8);
        if (put_byte(b, 0x21) < 0) {
            return -1;
        }
        return put_fixed64(b, bits);
    }
    if (PyTuple_Check(value) || PyList_Check(value)) {
        /* ArrayValue (field 5) of AnyValues (its field 1). A list can hold itself: guard the depth. */
        if (Py_EnterRecursiveCall(" while encoding a span attribute")) {
            return -1;
        }
        int result = -1;
        PyObject *items = PySequence_Fast(value, "a sequence");
        if (items != NULL) {
            Py_ssize_t array = open_field(b, 0x2A);
            result = array < 0 ? -1 : 0;
            Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
            for (Py_ssize_t i = 0; i < count && result == 0; i++) {
                Py_ssize_t item = open_field(b, 0x0A);
                if (item < 0 || put_any(b, PySequence_Fast_GET_ITEM(items, i)) < 0 || close_field(b, item) < 0) {
                    result = -1;
                }
            }
            if (result == 0) {
                result = close_field(b, array);
            }
            Py_DECREF(items);
        }
        Py_LeaveRecursiveCall();
        return result;
    }
    if (PyBytes_Check(value)) {
        if (put_byte(b, 0x3A) < 0 || put_varint(b, (uint64_t)PyBytes_GET_SIZE(value)) < 0) {
            return -1;
        }
        return put(b, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
    }
    return put_object_text(b, 0x0A, value);
}

/* One KeyValue field (`tag`: 0x4A for a span's attributes, 0x1A for an event's). */
static int put_attribute(Buffer *b, unsigned char tag, PyObject *key, PyObject *value) {
    if (!PyUnicode_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "span attribute keys must be str");
        return -1;
    }
    Py_ssize_t pair = open_field(b, tag);
    if (pair < 0 || put_text(b, 0x0A, key) < 0) {
        return -1;
    }
    Py_ssize_t any = open_field(b, 0x12);
    if (any < 0 || put_any(b, value) < 0 || close_field(b, any) < 0) {
        return -1;
    }
    return close_field(b, pair);
}

static int put_attributes(Buffer *b, unsigned char tag, PyObject *attributes) {
    if (attributes == Py_None) {
        return 0;
    }
    if (PyDict_Check(attributes)) {
        PyObject *key, *value;
        Py_ssize_t at = 0;
        while (PyDict_Next(attributes, &at, &key, &value)) {
            /* The references are borrowed: keep them while writing may run str() on the value. */
            Py_INCREF(key);
            Py_INCREF(value);
            int result = put_attribute(b, tag, key, value);
            Py_DECREF(key);
            Py_DECREF(value);
            if (result < 0) {
                return -1;
            }
        }
        return 0;
    }
    PyObject *items = PyMapping_Items(attributes);  /* any other mapping (the SDK's BoundedAttributes) */
    if (items == NULL) {
        return -1;
    }
    int result = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items) && result == 0; i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "mapping items must be pairs");
            result = -1;
        } else {
            result = put_attribute(b, tag, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1));
        }
    }
    Py_DECREF(items);
    return result;
}

static int put_event(Buffer *b, PyObject *event) {
    PyObject *name, *attributes;
    unsigned long long timestamp;
    if (!PyTuple_Check(event) || PyTuple_GET_SIZE(event) != 3) {
        PyErr_SetString(PyExc_TypeError, "a span event is a (name, attributes, time_ns) tuple");
        return -1;
    }
    name = PyTuple_GET_ITEM(event, 0);
    attributes = PyTuple_GET_ITEM(event, 1);
    timestamp = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(event, 2));
    if (timestamp == (unsigned long long)-1 && PyErr_Occurred()) {
        return -1;
    }
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "a span event's name must be str");
        return -1;
    }
    Py_ssize_t start = open_field(b, 0x5A);
    if (start < 0 || put_byte(b, 0x09) < 0 || put_fixed64(b, timestamp) < 0 || put_text(b, 0x12, name) < 0
        || put_attributes(b, 0x1A, attributes) < 0) {
        return -1;
    }
    return close_field(b, start);
}

/* An int argument as an unsigned 64-bit value; -1 with the exception set (not an int, negative, too big). */
static int unsigned_arg(PyObject *value, unsigned long long *out) {
    *out = PyLong_AsUnsignedLongLong(value);
    return (*out == (unsigned long long)-1 && PyErr_Occurred()) ? -1 : 0;
}

static int write_span(Buffer *b, PyObject *const *args) {
    PyObject *trace_id = args[0], *name = args[4], *group = args[8], *attributes = args[9], *events = args[10];
    PyObject *description = args[12];
    unsigned long long span_id, parent_id, flags, kind, start, end, code;
    if (unsigned_arg(args[1], &span_id) < 0 || unsigned_arg(args[2], &parent_id) < 0
        || unsigned_arg(args[3], &flags) < 0 || unsigned_arg(args[5], &kind) < 0 || unsigned_arg(args[6], &start) < 0
        || unsigned_arg(args[7], &end) < 0 || unsigned_arg(args[11], &code) < 0) {
        return -1;
    }
    if (!PyLong_Check(trace_id) || !PyUnicode_Check(name) || !PyBytes_Check(group)
        || (description != Py_None && !PyUnicode_Check(description)) || kind > 0x7F || code > 0x7F) {
        PyErr_SetString(PyExc_TypeError, "span_message: an argument of the wrong type");
        return -1;
    }
    unsigned long long trace_low = PyLong_AsUnsignedLongLongMask(trace_id);
    PyObject *shift = PyLong_FromLong(64);
    PyObject *high_part = shift == NULL ? NULL : PyNumber_Rshift(trace_id, shift);
    Py_XDECREF(shift);
    if (high_part == NULL) {
        return -1;
    }
    unsigned long long trace_high = PyLong_AsUnsignedLongLong(high_part);
    Py_DECREF(high_part);
    if (PyErr_Occurred()) {
        return -1;
    }

    Py_ssize_t span = open_field(b, 0x12);
    unsigned char id_tags[2] = {0x0A, 0x10};
    if (span < 0 || put(b, id_tags, 2) < 0 || put_big_endian64(b, trace_high) < 0
        || put_big_endian64(b, trace_low) < 0 || put_byte(b, 0x12) < 0 || put_byte(b, 0x08) < 0
        || put_big_endian64(b, span_id) < 0) {
        return -1;
    }
    if (parent_id != 0) {
        if (put_byte(b, 0x22) < 0 || put_byte(b, 0x08) < 0 || put_big_endian64(b, parent_id) < 0) {
            return -1;
        }
    }
    if (put_text(b, 0x2A, name) < 0 || put_byte(b, 0x30) < 0 || put_byte(b, (unsigned char)kind) < 0) {
        return -1;
    }
    if (put_byte(b, 0x39) < 0 || put_fixed64(b, start) < 0 || put_byte(b, 0x41) < 0 || put_fixed64(b, end) < 0) {
        return -1;
    }
    if (put(b, PyBytes_AS_STRING(group), PyBytes_GET_SIZE(group)) < 0 || put_attributes(b, 0x4A, attributes) < 0) {
        return -1;
    }
    PyObject *event_list = PySequence_Fast(events, "span events must be a sequence");
    if (event_list == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(event_list); i++) {
        if (put_event(b, PySequence_Fast_GET_ITEM(event_list, i)) < 0) {
            Py_DECREF(event_list);
            return -1;
        }
    }
    Py_DECREF(event_list);
    /* The status is written even when empty, as the SDK's encoder does. */
    Py_ssize_t status = open_field(b, 0x7A);
    if (status < 0) {
        return -1;
    }
    if (description != Py_None && PyUnicode_GET_LENGTH(description) > 0 && put_text(b, 0x12, description) < 0) {
        return -1;
    }
    if (code != 0 && (put_byte(b, 0x18) < 0 || put_byte(b, (unsigned char)code) < 0)) {
        return -1;
    }
    if (close_field(b, status) < 0) {
        return -1;
    }
    unsigned char flag_field[6] = {0x85, 0x01, (unsigned char)flags, (unsigned char)(flags >> 8),
                                   (unsigned char)(flags >> 16), (unsigned char)(flags >> 24)};
    if (put(b, flag_field, 6) < 0) {
        return -1;
    }
    return close_field(b, span);
}

static PyObject *span_message(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 13) {
        PyErr_Format(PyExc_TypeError, "span_message takes 13 arguments (%zd given)", nargs);
        return NULL;
    }
    Buffer b;
    b.data = b.first;
    b.len = 0;
    b.cap = (Py_ssize_t)sizeof(b.first);
    PyObject *result = NULL;
    if (write_span(&b, args) == 0) {
        result = PyBytes_FromStringAndSize((const char *)b.data, b.len);
    }
    if (b.data != b.first) {
        PyMem_Free(b.data);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"span_message", (PyCFunction)(void (*)(void))span_message, METH_FASTCALL,
     "span_message(trace_id, span_id, parent_span_id, flags, name, kind, start, end, group, attributes, events, "
     "status_code, description) -> bytes: one Span as a ScopeSpans `spans` field."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_span_proto", "Spans written into OTLP protobuf in C (see otlp_encode).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__span_proto(void) { return PyModule_Create(&module); }
