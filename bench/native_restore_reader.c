/* A restore read on librdkafka's C API, for bench/bench_native_restore.py (decision 0133).

   A measurement tool, not the processor's reader: it reads assigned topic partitions from
   given offsets to given ends with read_committed and folds each record straight into the
   dicts processors.restore_fold.keep_latest fills (latest value per key, the named header's
   value, tombstones remove, records counted per topic partition), without a confluent_kafka
   Message per record or any accessor call. It links the librdkafka that confluent-kafka's wheel
   bundles (the bench passes its path), compiled against Debian's librdkafka-dev headers
   (2.0.2: every call here exists there with the same ABI).

   Reader(config: dict[str, object])           a consumer: every pair goes to rd_kafka_conf_set
   Reader.learn(topic: str, timeout_s) -> bool  the topic's metadata, as _learn_topics asks it
   Reader.read(assignment, values, header_values, records_read, header_name, timeout_s) -> int
       assignment: list of (topic, partition, start, end); values, header_values: lists of
       dicts, one per assignment entry; records_read: list of int (replaced); header_name: bytes
       or None. Reads until each entry's end-of-partition event, at most timeout_s; returns the
       records folded. Raises ReadError for a client error, an end short of `end`, a record
       without a key or the timeout; the assignment is dropped in every case.
   timings() -> (consume, fold, destroy): the thread CPU seconds spent since the last call in
       rd_kafka_consume_batch_queue, in the fold and in rd_kafka_message_destroy. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <librdkafka/rdkafka.h>
#include <string.h>
#include <time.h>

#define BATCH_MAX 10000
#define POLL_MS 2

static PyObject *ReadError;

typedef struct {
    PyObject_HEAD
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
} Reader;

/* Thread CPU seconds spent in consume_batch_queue, the fold and message_destroy (timings()). */
static double spent_consume, spent_fold, spent_destroy;

static double thread_s(void) {
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static double monotonic_s(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static int Reader_init(Reader *self, PyObject *args, PyObject *kwargs) {
    PyObject *config;
    static char *names[] = {"config", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!", names, &PyDict_Type, &config))
        return -1;
    char error[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    PyObject *name, *value;
    Py_ssize_t position = 0;
    while (PyDict_Next(config, &position, &name, &value)) {
        PyObject *text;
        if (value == Py_True) text = PyUnicode_FromString("true");
        else if (value == Py_False) text = PyUnicode_FromString("false");
        else text = PyObject_Str(value);
        if (text == NULL) { rd_kafka_conf_destroy(conf); return -1; }
        const char *c_name = PyUnicode_AsUTF8(name), *c_value = PyUnicode_AsUTF8(text);
        if (c_name == NULL || c_value == NULL) {
            Py_DECREF(text); rd_kafka_conf_destroy(conf); return -1;
        }
        if (rd_kafka_conf_set(conf, c_name, c_value, error, sizeof error) != RD_KAFKA_CONF_OK) {
            Py_DECREF(text); rd_kafka_conf_destroy(conf);
            PyErr_Format(PyExc_ValueError, "%s", error);
            return -1;
        }
        Py_DECREF(text);
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
    if (rk == NULL) {  /* conf is destroyed only on success */
        rd_kafka_conf_destroy(conf);
        PyErr_Format(ReadError, "%s", error);
        return -1;
    }
    rd_kafka_poll_set_consumer(rk);  /* as confluent_kafka.Consumer: one queue for everything */
    self->rk = rk;
    self->queue = rd_kafka_queue_get_consumer(rk);
    return 0;
}

static void Reader_dealloc(Reader *self) {
    if (self->rk != NULL) {
        Py_BEGIN_ALLOW_THREADS
        rd_kafka_queue_destroy(self->queue);
        rd_kafka_consumer_close(self->rk);
        rd_kafka_destroy(self->rk);
        Py_END_ALLOW_THREADS
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Reader_learn(Reader *self, PyObject *args) {
    const char *topic;
    double timeout_s;
    if (!PyArg_ParseTuple(args, "sd", &topic, &timeout_s)) return NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(self->rk, topic, NULL);
    if (rkt == NULL) return PyErr_Format(ReadError, "topic %s: cannot make a handle", topic);
    const struct rd_kafka_metadata *metadata = NULL;
    rd_kafka_resp_err_t err;
    Py_BEGIN_ALLOW_THREADS
    err = rd_kafka_metadata(self->rk, 0, rkt, &metadata, (int)(timeout_s * 1000));
    Py_END_ALLOW_THREADS
    if (metadata != NULL) rd_kafka_metadata_destroy(metadata);
    rd_kafka_topic_destroy(rkt);
    return PyBool_FromLong(err == RD_KAFKA_RESP_ERR_NO_ERROR);
}

typedef struct {
    const char *topic;
    int32_t partition;
    int64_t end;
    PyObject *values;         /* borrowed from the caller's lists */
    PyObject *header_values;
    long long read;
    int pending;
} Entry;

/* Remove `key` from `dict` if there: 0, or -1 with an exception set. */
static int discard(PyObject *dict, PyObject *key) {
    if (PyDict_GET_SIZE(dict) == 0 || PyDict_DelItem(dict, key) == 0) return 0;
    if (!PyErr_ExceptionMatches(PyExc_KeyError)) return -1;
    PyErr_Clear();
    return 0;
}

/* The header value a record keeps: the first header named `name` with a value (as
   restore_fold._header_value takes it from the client's list). NULL: none. */
static PyObject *header_value(const rd_kafka_message_t *message, const char *name) {
    rd_kafka_headers_t *headers;
    if (rd_kafka_message_headers(message, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR) return NULL;
    const void *value;
    size_t size;
    const char *header_name;
    for (size_t index = 0;
         rd_kafka_header_get_all(headers, index, &header_name, &value, &size) ==
         RD_KAFKA_RESP_ERR_NO_ERROR;
         index++) {
        if (value != NULL && strcmp(header_name, name) == 0)
            return PyBytes_FromStringAndSize(value, (Py_ssize_t)size);
    }
    return NULL;
}

/* Fold one batch; -1 with an exception set on a record that is not plain. */
static int fold(rd_kafka_message_t **messages, ssize_t count, Entry *entries, Py_ssize_t n,
                const char *header_name, long long *folded, Py_ssize_t *pending) {
    rd_kafka_topic_t *run_topic = NULL;
    int32_t run_partition = -1;
    Entry *entry = NULL;
    for (ssize_t index = 0; index < count; index++) {
        rd_kafka_message_t *message = messages[index];
        if (message->rkt != run_topic || message->partition != run_partition || entry == NULL) {
            entry = NULL;
            if (message->rkt != NULL) {
                const char *topic = rd_kafka_topic_name(message->rkt);
                for (Py_ssize_t at = 0; at < n; at++)
                    if (entries[at].partition == message->partition &&
                        strcmp(entries[at].topic, topic) == 0) {
                        entry = &entries[at];
                        break;
                    }
            }
            run_topic = message->rkt;
            run_partition = message->partition;
        }
        if (message->err) {
            if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && entry != NULL) {
                if (message->offset < entry->end) {
                    PyErr_Format(ReadError, "%s[%d]: end of partition at %lld, expected %lld",
                                 entry->topic, entry->partition, (long long)message->offset,
                                 (long long)entry->end);
                    return -1;
                }
                if (entry->pending) { entry->pending = 0; (*pending)--; }
                continue;
            }
            PyErr_Format(ReadError, "reading %s[%d]: %s",
                         message->rkt ? rd_kafka_topic_name(message->rkt) : "None",
                         (int)message->partition, rd_kafka_message_errstr(message));
            return -1;
        }
        if (entry == NULL) {
            PyErr_Format(ReadError, "a record of an unassigned partition %s[%d]",
                         rd_kafka_topic_name(message->rkt), (int)message->partition);
            return -1;
        }
        if (message->key == NULL) {
            PyErr_Format(ReadError, "%s[%d]: a record without a key at %lld", entry->topic,
                         entry->partition, (long long)message->offset);
            return -1;
        }
        entry->read++;
        (*folded)++;
        PyObject *key = PyBytes_FromStringAndSize(message->key, (Py_ssize_t)message->key_len);
        if (key == NULL) return -1;
        if (message->payload == NULL) {  /* a tombstone removes its key */
            int failed = discard(entry->values, key) < 0 || discard(entry->header_values, key) < 0;
            Py_DECREF(key);
            if (failed) return -1;
            continue;
        }
        PyObject *value = PyBytes_FromStringAndSize(message->payload, (Py_ssize_t)message->len);
        if (value == NULL || PyDict_SetItem(entry->values, key, value) < 0) {
            Py_XDECREF(value); Py_DECREF(key); return -1;
        }
        Py_DECREF(value);
        if (header_name != NULL) {
            PyObject *header = header_value(message, header_name);
            if (header == NULL) {
                if (PyErr_Occurred() || discard(entry->header_values, key) < 0) {
                    Py_DECREF(key);
                    return -1;
                }
            } else {
                int failed = PyDict_SetItem(entry->header_values, key, header);
                Py_DECREF(header);
                if (failed < 0) { Py_DECREF(key); return -1; }
            }
        }
        Py_DECREF(key);
    }
    return 0;
}

static PyObject *Reader_read(Reader *self, PyObject *args) {
    PyObject *assignment, *values, *header_values, *records_read, *header_object;
    double timeout_s;
    if (!PyArg_ParseTuple(args, "O!O!O!O!Od", &PyList_Type, &assignment, &PyList_Type, &values,
                          &PyList_Type, &header_values, &PyList_Type, &records_read,
                          &header_object, &timeout_s))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(assignment);
    if (PyList_GET_SIZE(values) != n || PyList_GET_SIZE(header_values) != n ||
        PyList_GET_SIZE(records_read) != n)
        return PyErr_Format(PyExc_ValueError, "one dict and one count per assigned partition");
    const char *header_name = NULL;
    if (header_object != Py_None && (header_name = PyBytes_AsString(header_object)) == NULL)
        return NULL;
    double deadline = monotonic_s() + timeout_s;
    Entry *entries = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Entry));
    rd_kafka_message_t **messages = PyMem_Malloc(sizeof(rd_kafka_message_t *) * BATCH_MAX);
    rd_kafka_topic_partition_list_t *partitions = rd_kafka_topic_partition_list_new((int)n);
    PyObject *result = NULL;
    Py_ssize_t pending = 0;
    long long folded = 0;
    int assigned = 0;
    if (entries == NULL || messages == NULL) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t at = 0; at < n; at++) {
        long long start;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(assignment, at), "siLL", &entries[at].topic,
                              &entries[at].partition, &start, &entries[at].end))
            goto done;
        entries[at].values = PyList_GET_ITEM(values, at);
        entries[at].header_values = PyList_GET_ITEM(header_values, at);
        if (!PyDict_Check(entries[at].values) || !PyDict_Check(entries[at].header_values)) {
            PyErr_SetString(PyExc_TypeError, "values and header_values hold dicts");
            goto done;
        }
        entries[at].pending = 1;
        pending++;
        rd_kafka_topic_partition_list_add(partitions, entries[at].topic, entries[at].partition)
            ->offset = start;
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(self->rk, partitions);
    if (err) {
        PyErr_Format(ReadError, "assign: %s", rd_kafka_err2str(err));
        goto done;
    }
    assigned = 1;
    while (pending > 0) {
        if (monotonic_s() >= deadline) {
            char message[128];  /* PyErr_Format has no %f */
            snprintf(message, sizeof message,
                     "%zd partitions not read to their end within %.1f s", pending, timeout_s);
            PyErr_SetString(ReadError, message);
            goto done;
        }
        ssize_t count;
        double t0 = thread_s();
        Py_BEGIN_ALLOW_THREADS
        count = rd_kafka_consume_batch_queue(self->queue, POLL_MS, messages, BATCH_MAX);
        Py_END_ALLOW_THREADS
        double t1 = thread_s();
        spent_consume += t1 - t0;
        if (count < 0) {
            PyErr_Format(ReadError, "consume: %s", rd_kafka_err2str(rd_kafka_last_error()));
            goto done;
        }
        int failed = fold(messages, count, entries, n, header_name, &folded, &pending);
        double t2 = thread_s();
        spent_fold += t2 - t1;
        for (ssize_t index = 0; index < count; index++) rd_kafka_message_destroy(messages[index]);
        spent_destroy += thread_s() - t2;
        if (failed < 0) goto done;
        if (PyErr_CheckSignals() < 0) goto done;
    }
    for (Py_ssize_t at = 0; at < n; at++) {
        PyObject *count = PyLong_FromLongLong(entries[at].read);
        if (count == NULL) goto done;
        PyList_SetItem(records_read, at, count);  /* steals */
    }
    result = PyLong_FromLongLong(folded);
done:
    if (assigned) {
        Py_BEGIN_ALLOW_THREADS
        rd_kafka_assign(self->rk, NULL);
        Py_END_ALLOW_THREADS
    }
    rd_kafka_topic_partition_list_destroy(partitions);
    PyMem_Free(messages);
    PyMem_Free(entries);
    return result;
}

static PyObject *timings(PyObject *module, PyObject *unused) {
    (void)module; (void)unused;
    PyObject *result = Py_BuildValue("(ddd)", spent_consume, spent_fold, spent_destroy);
    spent_consume = spent_fold = spent_destroy = 0;
    return result;
}

static PyMethodDef module_methods[] = {
    {"timings", timings, METH_NOARGS,
     "thread CPU seconds in consume_batch_queue, the fold, message_destroy since the last call"},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef Reader_methods[] = {
    {"learn", (PyCFunction)Reader_learn, METH_VARARGS, "the topic's metadata; True if it came"},
    {"read", (PyCFunction)Reader_read, METH_VARARGS, "read the assignment to its ends, folded"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "native_restore_reader.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "native_restore_reader", "a restore read on librdkafka's C API", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_native_restore_reader(void) {
    if (rd_kafka_version() < RD_KAFKA_VERSION) {  /* built against newer headers than it runs */
        PyErr_Format(PyExc_ImportError, "librdkafka %s is older than the headers (%x)",
                     rd_kafka_version_str(), RD_KAFKA_VERSION);
        return NULL;
    }
    if (PyType_Ready(&ReaderType) < 0) return NULL;
    PyObject *created = PyModule_Create(&module);
    if (created == NULL) return NULL;
    ReadError = PyErr_NewException("native_restore_reader.ReadError", NULL, NULL);
    Py_INCREF(&ReaderType);
    if (ReadError == NULL || PyModule_AddObject(created, "Reader", (PyObject *)&ReaderType) < 0 ||
        PyModule_AddObject(created, "ReadError", ReadError) < 0)
        return NULL;
    Py_INCREF(ReadError);
    return created;
}
