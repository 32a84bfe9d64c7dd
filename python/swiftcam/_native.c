/*
 * swiftcam._native: the CPython binding of the swiftcam C ABI
 * (Sources/CSwiftCAM/include/swiftcam.h).
 *
 * This file holds all CPython code of the project and no model logic. Argument checks that need
 * NumPy or produce friendly messages live in the package's Python modules; here, every tensor
 * arrives through the buffer protocol (no NumPy C API) and is checked for format 'f', item size
 * 4 and C-contiguity; inputs are passed to Swift without a copy, outputs are caller-allocated
 * writable buffers. The GIL is released around every engine call that computes.
 *
 * Lifetime and threads
 * - Model wraps swiftcam_model*. Any number of threads may compute with one model at once. Each
 *   computing call and each live Trace holds the model "in use" (a counter changed only with the
 *   GIL held). close() never frees memory under a running call: it marks the model closed at once
 *   (later calls raise ModelClosedError) and DEFERS the swiftcam_model_free until the last
 *   running call has returned and the last Trace has been closed or collected.
 * - Layer index LAYER_INPUT (-1) in trace() is the network's input (gradients to the image).
 * - Trace wraps swiftcam_trace*, holds a strong reference to its Model and keeps it in use.
 *   A trace belongs to one thread at a time: a second thread calling into a trace that is busy
 *   gets RuntimeError instead of a data race; close() on a busy trace is deferred likewise.
 *
 * Errors: a failing status becomes the exception built by swiftcam.errors.error_for_status, with
 * the engine's message kept verbatim.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "swiftcam.h"

#define MESSAGE_CAPACITY 2048

/* swiftcam.errors, looked up once at import. */
static PyObject *error_for_status_function; /* error_for_status(status, message) -> exception */
static PyObject *InvalidInputError;
static PyObject *BufferSizeError;
static PyObject *ModelClosedError;

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

/* Raises the swiftcam.errors exception for a failing status; always returns NULL. */
static PyObject *
raise_status(swiftcam_status status, char *message)
{
    message[MESSAGE_CAPACITY - 1] = '\0';
    PyObject *text = PyUnicode_DecodeUTF8(message, (Py_ssize_t)strlen(message), "replace");
    if (text == NULL) {
        return NULL;
    }
    PyObject *error = PyObject_CallFunction(error_for_status_function, "iO", (int)status, text);
    Py_DECREF(text);
    if (error == NULL) {
        return NULL;
    }
    PyErr_SetObject((PyObject *)Py_TYPE(error), error);
    Py_DECREF(error);
    return NULL;
}

static PyObject *
string_or_empty(const char *text)
{
    if (text == NULL) {
        return PyUnicode_FromString("");
    }
    return PyUnicode_DecodeUTF8(text, (Py_ssize_t)strlen(text), "replace");
}

static int
is_float32_format(const char *format)
{
    if (format == NULL) {
        return 0; /* unsigned bytes */
    }
    return strcmp(format, "f") == 0 || strcmp(format, "@f") == 0 || strcmp(format, "=f") == 0
#if PY_LITTLE_ENDIAN
           || strcmp(format, "<f") == 0
#else
           || strcmp(format, ">f") == 0
#endif
        ;
}

/* Gets a float32, C-contiguous buffer from obj (writable when asked). On failure sets an
   exception naming `what` and returns -1; on success the caller must PyBuffer_Release(view). */
static int
get_float32_buffer(PyObject *obj, Py_buffer *view, int writable, const char *what)
{
    int flags = PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        return -1; /* CPython's / the exporter's own message (e.g. "array is read-only") */
    }
    if (!is_float32_format(view->format) || view->itemsize != 4) {
        PyErr_Format(InvalidInputError,
                     "%s: expected a float32 buffer (format 'f', item size 4), "
                     "got format '%s' with item size %zd",
                     what, view->format ? view->format : "B", view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    if (!PyBuffer_IsContiguous(view, 'C')) {
        PyErr_Format(InvalidInputError, "%s: expected a C-contiguous buffer", what);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int64_t
element_count(const Py_buffer *view)
{
    return (int64_t)(view->len / 4);
}

/* Reads a buffer's shape as (N, C, H, W); the buffer must have rank 4. */
static int
nchw_shape(const Py_buffer *view, int64_t shape[4], const char *what)
{
    if (view->ndim != 4 || view->shape == NULL) {
        PyErr_Format(InvalidInputError, "%s: expected a 4-D (N, C, H, W) buffer, got %d dimensions",
                     what, view->ndim);
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        shape[i] = (int64_t)view->shape[i];
    }
    return 0;
}

static int
check_count(const Py_buffer *view, int64_t expected, const char *what)
{
    if (element_count(view) != expected) {
        PyErr_Format(BufferSizeError, "%s: expected %lld elements, got %lld", what,
                     (long long)expected, (long long)element_count(view));
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Model
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    swiftcam_model *model; /* NULL once freed                                          */
    Py_ssize_t in_use;     /* running calls + live traces; changed with the GIL held      */
    int closed;            /* close() was called; free when in_use drops to 0            */
} ModelObject;

static PyTypeObject ModelType;
static PyTypeObject TraceType;

static void
model_free_if_idle(ModelObject *self)
{
    if (self->closed && self->in_use == 0 && self->model != NULL) {
        swiftcam_model *model = self->model;
        self->model = NULL;
        swiftcam_model_free(model);
    }
}

static int
model_check_open(ModelObject *self)
{
    if (self->closed || self->model == NULL) {
        PyErr_SetString(ModelClosedError, "the model is closed");
        return -1;
    }
    return 0;
}

static int
model_acquire(ModelObject *self)
{
    if (model_check_open(self) < 0) {
        return -1;
    }
    self->in_use++;
    return 0;
}

static void
model_release(ModelObject *self)
{
    self->in_use--;
    model_free_if_idle(self);
}

static PyObject *
model_wrap(swiftcam_model *model)
{
    ModelObject *self = PyObject_New(ModelObject, &ModelType);
    if (self == NULL) {
        swiftcam_model_free(model);
        return NULL;
    }
    self->model = model;
    self->in_use = 0;
    self->closed = 0;
    return (PyObject *)self;
}

static void
Model_dealloc(ModelObject *self)
{
    /* No call can be running and no trace alive: both hold a reference to self. */
    if (self->model != NULL) {
        swiftcam_model_free(self->model);
        self->model = NULL;
    }
    PyObject_Free(self);
}

static PyObject *
Model_close(ModelObject *self, PyObject *Py_UNUSED(ignored))
{
    self->closed = 1;
    model_free_if_idle(self);
    Py_RETURN_NONE;
}

static PyObject *
Model_get_closed(ModelObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->closed);
}

static PyObject *
Model_get_in_use(ModelObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->in_use);
}

static PyObject *
Model_get_freed(ModelObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->model == NULL);
}

static PyObject *
Model_get_architecture(ModelObject *self, void *Py_UNUSED(closure))
{
    if (model_check_open(self) < 0) {
        return NULL;
    }
    return string_or_empty(swiftcam_model_architecture(self->model));
}

static PyObject *
Model_get_description(ModelObject *self, void *Py_UNUSED(closure))
{
    if (model_check_open(self) < 0) {
        return NULL;
    }
    return string_or_empty(swiftcam_model_description(self->model));
}

static PyObject *
Model_get_num_classes(ModelObject *self, void *Py_UNUSED(closure))
{
    if (model_check_open(self) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong((long long)swiftcam_model_num_classes(self->model));
}

static PyObject *
Model_get_input_channels(ModelObject *self, void *Py_UNUSED(closure))
{
    if (model_check_open(self) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong((long long)swiftcam_model_input_channels(self->model));
}

static PyObject *
Model_get_bias_layer_count(ModelObject *self, void *Py_UNUSED(closure))
{
    if (model_check_open(self) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong((long long)swiftcam_model_bias_layer_count(self->model));
}

static PyObject *
Model_get_layer_names(ModelObject *self, void *Py_UNUSED(closure))
{
    if (model_check_open(self) < 0) {
        return NULL;
    }
    int64_t count = swiftcam_model_layer_count(self->model);
    if (count < 0) {
        count = 0;
    }
    PyObject *names = PyTuple_New((Py_ssize_t)count);
    if (names == NULL) {
        return NULL;
    }
    for (int64_t i = 0; i < count; i++) {
        const char *name = swiftcam_model_layer_name(self->model, i);
        PyObject *item = string_or_empty(name);
        if (item == NULL) {
            Py_DECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, (Py_ssize_t)i, item);
    }
    return names;
}

/* layer_shape(layer: int, input_shape: tuple[int, int, int, int]) -> tuple of 4 ints */
static PyObject *
Model_layer_shape(ModelObject *self, PyObject *args)
{
    long long layer, n, c, h, w;
    if (!PyArg_ParseTuple(args, "L(LLLL):layer_shape", &layer, &n, &c, &h, &w)) {
        return NULL;
    }
    if (model_check_open(self) < 0) {
        return NULL;
    }
    int64_t input_shape[4] = {n, c, h, w};
    int64_t output_shape[4] = {0, 0, 0, 0};
    char message[MESSAGE_CAPACITY];
    message[0] = '\0';
    swiftcam_status status = swiftcam_model_layer_shape(self->model, (int64_t)layer, input_shape,
                                                        output_shape, message, MESSAGE_CAPACITY);
    if (status != SWIFTCAM_STATUS_OK) {
        return raise_status(status, message);
    }
    return Py_BuildValue("(LLLL)", (long long)output_shape[0], (long long)output_shape[1],
                         (long long)output_shape[2], (long long)output_shape[3]);
}

/* The shared body of forward and forward_from: logits (B, classes) from a float32
   (B, C, h, w) buffer, through the whole network (from_layer < 0) or the part above from_layer. */
static PyObject *
model_logits(ModelObject *self, long long from_layer, PyObject *input_object,
             PyObject *logits_object, const char *what)
{
    if (model_acquire(self) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_buffer input, logits;
    int64_t shape[4];
    if (get_float32_buffer(input_object, &input, 0, what) < 0) {
        goto done;
    }
    if (nchw_shape(&input, shape, what) < 0) {
        goto release_input;
    }
    if (get_float32_buffer(logits_object, &logits, 1, "logits") < 0) {
        goto release_input;
    }
    if (check_count(&logits, shape[0] * swiftcam_model_num_classes(self->model), "logits") < 0) {
        goto release_logits;
    }
    char message[MESSAGE_CAPACITY];
    message[0] = '\0';
    swiftcam_status status;
    const float *data = (const float *)input.buf;
    float *out = (float *)logits.buf;
    int64_t count = element_count(&logits);
    Py_BEGIN_ALLOW_THREADS
    if (from_layer < 0) {
        status = swiftcam_model_forward(self->model, data, shape, out, count, message,
                                        MESSAGE_CAPACITY);
    }
    else {
        status = swiftcam_model_forward_from(self->model, (int64_t)from_layer, data, shape, out,
                                             count, message, MESSAGE_CAPACITY);
    }
    Py_END_ALLOW_THREADS
    if (status != SWIFTCAM_STATUS_OK) {
        raise_status(status, message);
    }
    else {
        result = Py_NewRef(Py_None);
    }
release_logits:
    PyBuffer_Release(&logits);
release_input:
    PyBuffer_Release(&input);
done:
    model_release(self);
    return result;
}

/* forward(input: float32 (N, C, H, W) buffer, logits: writable float32 (N, classes) buffer) */
static PyObject *
Model_forward(ModelObject *self, PyObject *args)
{
    PyObject *input_object, *logits_object;
    if (!PyArg_ParseTuple(args, "OO:forward", &input_object, &logits_object)) {
        return NULL;
    }
    return model_logits(self, -1, input_object, logits_object, "input");
}

/* forward_from(layer: int, activation: float32 (B, C, h, w) buffer, logits: writable (B, classes))
   runs only the part of the network above `layer` (AblationCAM). */
static PyObject *
Model_forward_from(ModelObject *self, PyObject *args)
{
    long long layer;
    PyObject *activation_object, *logits_object;
    if (!PyArg_ParseTuple(args, "LOO:forward_from", &layer, &activation_object, &logits_object)) {
        return NULL;
    }
    if (layer < 0) {
        PyErr_Format(InvalidInputError, "forward_from: layer must be a layer index >= 0, got %lld",
                     layer);
        return NULL;
    }
    return model_logits(self, layer, activation_object, logits_object, "activation");
}

static PyObject *
Model_last_input_address(ModelObject *self, PyObject *Py_UNUSED(ignored))
{
    if (model_check_open(self) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong((long long)swiftcam_model_last_input_address(self->model));
}

/* trace(input: float32 (N, C, H, W) buffer, layers: sequence of int) -> Trace */
static PyObject *Model_trace(ModelObject *self, PyObject *args);
static PyObject *Model_update_tensors(ModelObject *self, PyObject *args);

static PyMethodDef Model_methods[] = {
    {"close", (PyCFunction)Model_close, METH_NOARGS,
     "close()\n--\n\nMark the model closed; its memory is freed as soon as no call is running "
     "and no trace is alive (at once when idle)."},
    {"layer_shape", (PyCFunction)Model_layer_shape, METH_VARARGS,
     "layer_shape(layer, input_shape)\n--\n\nThe (N, C, h, w) shape of layer `layer` for an "
     "input of shape input_shape."},
    {"forward", (PyCFunction)Model_forward, METH_VARARGS,
     "forward(input, logits)\n--\n\nlogits (N, classes) = model(input (N, C, H, W)); both "
     "float32 C-contiguous buffers, logits writable. The GIL is released."},
    {"forward_from", (PyCFunction)Model_forward_from, METH_VARARGS,
     "forward_from(layer, activation, logits)\n--\n\nlogits (B, classes) from an output "
     "(B, C, h, w) of layer `layer`, running only the network above it. GIL released."},
    {"update_tensors", (PyCFunction)Model_update_tensors, METH_VARARGS,
     "update_tensors(items)\n--\n\nReplace the weights with (name, float32 buffer) pairs of "
     "the same architecture. Running calls finish with the old weights. GIL released."},
    {"trace", (PyCFunction)Model_trace, METH_VARARGS,
     "trace(input, layers)\n--\n\nRun a forward pass keeping the activations of `layers` "
     "(indices) for backward passes and CAMs. The GIL is released."},
    {"last_input_address", (PyCFunction)Model_last_input_address, METH_NOARGS,
     "last_input_address()\n--\n\nThe address the most recent forward pass or trace read "
     "its input from."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Model_getset[] = {
    {"closed", (getter)Model_get_closed, NULL, "True once close() was called.", NULL},
    {"in_use", (getter)Model_get_in_use, NULL, "Running calls plus live traces.", NULL},
    {"freed", (getter)Model_get_freed, NULL, "True once the engine's model was freed.", NULL},
    {"architecture", (getter)Model_get_architecture, NULL, "Architecture name.", NULL},
    {"description", (getter)Model_get_description, NULL, "Configuration as JSON text.", NULL},
    {"num_classes", (getter)Model_get_num_classes, NULL, "Number of output classes.", NULL},
    {"input_channels", (getter)Model_get_input_channels, NULL, "Channels of the input.", NULL},
    {"bias_layer_count", (getter)Model_get_bias_layer_count, NULL,
     "Layers with a bias FullGrad uses (every batch norm of a ResNet).", NULL},
    {"layer_names", (getter)Model_get_layer_names, NULL, "Layer names in forward order.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ModelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "swiftcam._native.Model",
    .tp_basicsize = sizeof(ModelObject),
    .tp_dealloc = (destructor)Model_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A loaded swiftcam_model (low level; use swiftcam.load).",
    .tp_methods = Model_methods,
    .tp_getset = Model_getset,
};

/* ---------------------------------------------------------------------------------------------
 * Trace
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    ModelObject *owner;     /* strong reference; this trace holds it "in use" */
    swiftcam_trace *trace;  /* NULL once freed                               */
    int64_t batch;          /* N of the traced input                         */
    int64_t num_classes;
    int64_t layer_count;    /* requested layers                              */
    int busy;               /* a call is running (GIL released)              */
    int closed;             /* close() was called; free when not busy        */
} TraceObject;

static void
trace_destroy(TraceObject *self)
{
    if (self->trace != NULL) {
        swiftcam_trace *trace = self->trace;
        self->trace = NULL;
        swiftcam_trace_free(trace); /* before its model, as the header requires */
        model_release(self->owner);
    }
}

static int
trace_acquire(TraceObject *self)
{
    if (self->closed || self->trace == NULL) {
        PyErr_SetString(ModelClosedError, "the trace is closed");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this trace is being used by another thread; a trace belongs to one "
                        "thread at a time");
        return -1;
    }
    self->busy = 1;
    return 0;
}

static void
trace_release(TraceObject *self)
{
    self->busy = 0;
    if (self->closed) {
        trace_destroy(self);
    }
}

static PyObject *
Model_trace(ModelObject *self, PyObject *args)
{
    PyObject *input_object, *layers_object;
    if (!PyArg_ParseTuple(args, "OO:trace", &input_object, &layers_object)) {
        return NULL;
    }
    PyObject *layers = PySequence_Tuple(layers_object);
    if (layers == NULL) {
        return NULL;
    }
    Py_ssize_t layer_count = PyTuple_GET_SIZE(layers);
    int64_t *indices = PyMem_Malloc(sizeof(int64_t) * (size_t)(layer_count > 0 ? layer_count : 1));
    if (indices == NULL) {
        Py_DECREF(layers);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < layer_count; i++) {
        long long value = PyLong_AsLongLong(PyTuple_GET_ITEM(layers, i));
        if (value == -1 && PyErr_Occurred()) {
            PyMem_Free(indices);
            Py_DECREF(layers);
            return NULL;
        }
        indices[i] = (int64_t)value;
    }
    Py_DECREF(layers);

    if (model_acquire(self) < 0) {
        PyMem_Free(indices);
        return NULL;
    }
    int keep_model = 0; /* set when the new trace takes over this acquisition */
    PyObject *result = NULL;
    Py_buffer input;
    int64_t shape[4];
    if (get_float32_buffer(input_object, &input, 0, "input") < 0) {
        goto done;
    }
    if (nchw_shape(&input, shape, "input") < 0) {
        goto release_input;
    }
    TraceObject *trace_object = PyObject_New(TraceObject, &TraceType);
    if (trace_object == NULL) {
        goto release_input;
    }
    trace_object->owner = NULL;
    trace_object->trace = NULL;
    trace_object->busy = 0;
    trace_object->closed = 0;

    char message[MESSAGE_CAPACITY];
    message[0] = '\0';
    swiftcam_trace *trace = NULL;
    swiftcam_status status;
    Py_BEGIN_ALLOW_THREADS
    status = swiftcam_trace_create(self->model, (const float *)input.buf, shape, indices,
                                   (int64_t)layer_count, &trace, message, MESSAGE_CAPACITY);
    Py_END_ALLOW_THREADS
    if (status != SWIFTCAM_STATUS_OK || trace == NULL) {
        Py_DECREF(trace_object);
        if (status == SWIFTCAM_STATUS_OK) {
            PyErr_SetString(PyExc_SystemError, "swiftcam_trace_create returned no trace");
        }
        else {
            raise_status(status, message);
        }
        goto release_input;
    }
    trace_object->owner = (ModelObject *)Py_NewRef((PyObject *)self);
    trace_object->trace = trace;
    trace_object->batch = shape[0];
    trace_object->num_classes = swiftcam_model_num_classes(self->model);
    trace_object->layer_count = (int64_t)layer_count;
    keep_model = 1;
    result = (PyObject *)trace_object;
release_input:
    PyBuffer_Release(&input);
done:
    PyMem_Free(indices);
    if (!keep_model) {
        model_release(self);
    }
    return result;
}

static void
Trace_dealloc(TraceObject *self)
{
    /* No call can be running: a running call holds a reference to self. */
    if (self->owner != NULL) {
        trace_destroy(self);
        Py_DECREF(self->owner);
    }
    PyObject_Free(self);
}

static PyObject *
Trace_close(TraceObject *self, PyObject *Py_UNUSED(ignored))
{
    self->closed = 1;
    if (!self->busy) {
        trace_destroy(self);
    }
    Py_RETURN_NONE;
}

static PyObject *
Trace_get_closed(TraceObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->closed);
}

static PyObject *
Trace_get_batch(TraceObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong((long long)self->batch);
}

static PyObject *
Trace_get_layer_count(TraceObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong((long long)self->layer_count);
}

/* logits(out: writable float32 (N, classes) buffer) */
static PyObject *
Trace_logits(TraceObject *self, PyObject *args)
{
    PyObject *out_object;
    if (!PyArg_ParseTuple(args, "O:logits", &out_object)) {
        return NULL;
    }
    if (trace_acquire(self) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_buffer out;
    if (get_float32_buffer(out_object, &out, 1, "logits") < 0) {
        goto done;
    }
    if (check_count(&out, self->batch * self->num_classes, "logits") < 0) {
        goto release_out;
    }
    char message[MESSAGE_CAPACITY];
    message[0] = '\0';
    swiftcam_status status;
    Py_BEGIN_ALLOW_THREADS
    status = swiftcam_trace_logits(self->trace, (float *)out.buf, element_count(&out), message,
                                   MESSAGE_CAPACITY);
    Py_END_ALLOW_THREADS
    if (status != SWIFTCAM_STATUS_OK) {
        raise_status(status, message);
    }
    else {
        result = Py_NewRef(Py_None);
    }
release_out:
    PyBuffer_Release(&out);
done:
    trace_release(self);
    return result;
}

/* activation(position: int, out: writable float32 buffer) */
static PyObject *
Trace_activation(TraceObject *self, PyObject *args)
{
    long long position;
    PyObject *out_object;
    if (!PyArg_ParseTuple(args, "LO:activation", &position, &out_object)) {
        return NULL;
    }
    if (trace_acquire(self) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_buffer out;
    if (get_float32_buffer(out_object, &out, 1, "activation") < 0) {
        goto done;
    }
    char message[MESSAGE_CAPACITY];
    message[0] = '\0';
    swiftcam_status status;
    Py_BEGIN_ALLOW_THREADS
    status = swiftcam_trace_activation(self->trace, (int64_t)position, (float *)out.buf,
                                       element_count(&out), message, MESSAGE_CAPACITY);
    Py_END_ALLOW_THREADS
    if (status != SWIFTCAM_STATUS_OK) {
        raise_status(status, message);
    }
    else {
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&out);
done:
    trace_release(self);
    return result;
}

/* A list of writable float32 buffers, one per requested layer. */
typedef struct {
    Py_ssize_t count;
    Py_buffer *views;
    float **pointers;
    int64_t *counts;
    PyObject *items; /* tuple holding the objects while the views are held */
} BufferList;

static void
buffer_list_release(BufferList *list)
{
    if (list->views != NULL) {
        for (Py_ssize_t i = 0; i < list->count; i++) {
            if (list->views[i].obj != NULL) {
                PyBuffer_Release(&list->views[i]);
            }
        }
    }
    PyMem_Free(list->views);
    PyMem_Free(list->pointers);
    PyMem_Free(list->counts);
    Py_XDECREF(list->items);
    memset(list, 0, sizeof(*list));
}

static int
buffer_list_get(PyObject *sequence, int64_t expected_count, BufferList *list, const char *what)
{
    memset(list, 0, sizeof(*list));
    list->items = PySequence_Tuple(sequence);
    if (list->items == NULL) {
        return -1;
    }
    list->count = PyTuple_GET_SIZE(list->items);
    if ((int64_t)list->count != expected_count) {
        PyErr_Format(InvalidInputError, "%s: expected %lld buffers (one per traced layer), got %zd",
                     what, (long long)expected_count, list->count);
        buffer_list_release(list);
        return -1;
    }
    size_t n = (size_t)(list->count > 0 ? list->count : 1);
    list->views = PyMem_Calloc(n, sizeof(Py_buffer));
    list->pointers = PyMem_Calloc(n, sizeof(float *));
    list->counts = PyMem_Calloc(n, sizeof(int64_t));
    if (list->views == NULL || list->pointers == NULL || list->counts == NULL) {
        buffer_list_release(list);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < list->count; i++) {
        if (get_float32_buffer(PyTuple_GET_ITEM(list->items, i), &list->views[i], 1, what) < 0) {
            list->views[i].obj = NULL;
            buffer_list_release(list);
            return -1;
        }
        list->pointers[i] = (float *)list->views[i].buf;
        list->counts[i] = element_count(&list->views[i]);
    }
    return 0;
}

/* Gets the seeds (N, K, classes) of a trace call, read-only and counted; on failure sets an
   exception and returns -1 (nothing to release). */
static int
trace_seeds_get(TraceObject *self, PyObject *object, long long k, Py_buffer *seeds)
{
    if (get_float32_buffer(object, seeds, 0, "seeds") < 0) {
        return -1;
    }
    if (check_count(seeds, self->batch * (int64_t)k * self->num_classes, "seeds") < 0) {
        PyBuffer_Release(seeds);
        return -1;
    }
    return 0;
}

/* None for SWIFTCAM_STATUS_OK; otherwise NULL with the status's exception set. */
static PyObject *
none_or_raise(swiftcam_status status, char *message)
{
    if (status != SWIFTCAM_STATUS_OK) {
        return raise_status(status, message);
    }
    Py_RETURN_NONE;
}

typedef swiftcam_status (*backward_function)(const swiftcam_trace *, const float *, int64_t,
                                              float *const *, const int64_t *, char *, int64_t);

/* backward(seeds: float32 (N, K, classes), seeds_per_image: int, gradients: list of buffers),
   and guided_backward with the same arguments. */
static PyObject *
trace_backward_with(TraceObject *self, PyObject *args, backward_function backward,
                    const char *format)
{
    PyObject *seeds_object, *gradients_object;
    long long k;
    if (!PyArg_ParseTuple(args, format, &seeds_object, &k, &gradients_object)) {
        return NULL;
    }
    if (trace_acquire(self) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_buffer seeds;
    BufferList gradients;
    if (trace_seeds_get(self, seeds_object, k, &seeds) < 0) {
        goto done;
    }
    if (buffer_list_get(gradients_object, self->layer_count, &gradients, "gradients") < 0) {
        goto release_seeds;
    }
    char message[MESSAGE_CAPACITY];
    message[0] = '\0';
    swiftcam_status status;
    Py_BEGIN_ALLOW_THREADS
    status = backward(self->trace, (const float *)seeds.buf, (int64_t)k, gradients.pointers,
                      gradients.counts, message, MESSAGE_CAPACITY);
    Py_END_ALLOW_THREADS
    result = none_or_raise(status, message);
    buffer_list_release(&gradients);
release_seeds:
    PyBuffer_Release(&seeds);
done:
    trace_release(self);
    return result;
}

static PyObject *
Trace_backward(TraceObject *self, PyObject *args)
{
    return trace_backward_with(self, args, swiftcam_trace_backward, "OLO:backward");
}

static PyObject *
Trace_guided_backward(TraceObject *self, PyObject *args)
{
    return trace_backward_with(self, args, swiftcam_trace_guided_backward,
                               "OLO:guided_backward");
}

/* cam(method, eigen_smooth, output_height, output_width, seeds or None, seeds_per_image,
       heatmaps, raw_maps or None) */
static PyObject *
Trace_cam(TraceObject *self, PyObject *args)
{
    int method, eigen_smooth;
    long long height, width, k;
    PyObject *seeds_object, *heatmaps_object, *raw_object;
    if (!PyArg_ParseTuple(args, "ipLLOLOO:cam", &method, &eigen_smooth, &height, &width,
                          &seeds_object, &k, &heatmaps_object, &raw_object)) {
        return NULL;
    }
    if (trace_acquire(self) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    int have_seeds = seeds_object != Py_None;
    int have_raw = raw_object != Py_None;
    Py_buffer seeds, heatmaps;
    BufferList raw;
    memset(&raw, 0, sizeof(raw));
    if (have_seeds && trace_seeds_get(self, seeds_object, k, &seeds) < 0) {
        goto done;
    }
    if (get_float32_buffer(heatmaps_object, &heatmaps, 1, "heatmaps") < 0) {
        goto release_seeds;
    }
    if (have_raw && buffer_list_get(raw_object, self->layer_count, &raw, "raw_maps") < 0) {
        goto release_heatmaps;
    }
    swiftcam_cam_options options;
    memset(&options, 0, sizeof(options));
    options.method = (int32_t)method;
    options.eigen_smooth = (int32_t)eigen_smooth;
    options.output_height = (int64_t)height;
    options.output_width = (int64_t)width;
    char message[MESSAGE_CAPACITY];
    message[0] = '\0';
    swiftcam_status status;
    Py_BEGIN_ALLOW_THREADS
    status = swiftcam_trace_cam(self->trace, &options,
                                have_seeds ? (const float *)seeds.buf : NULL, (int64_t)k,
                                (float *)heatmaps.buf, element_count(&heatmaps),
                                have_raw ? raw.pointers : NULL, have_raw ? raw.counts : NULL,
                                message, MESSAGE_CAPACITY);
    Py_END_ALLOW_THREADS
    result = none_or_raise(status, message);
    if (have_raw) {
        buffer_list_release(&raw);
    }
release_heatmaps:
    PyBuffer_Release(&heatmaps);
release_seeds:
    if (have_seeds) {
        PyBuffer_Release(&seeds);
    }
done:
    trace_release(self);
    return result;
}

/* fullgrad(seeds: float32 (N, K, classes), seeds_per_image, sum_terms, output_height,
            output_width, maps: writable float32 (N, K, [T,] H, W)) */
static PyObject *
Trace_fullgrad(TraceObject *self, PyObject *args)
{
    PyObject *seeds_object, *maps_object;
    long long k, height, width;
    int sum_terms;
    if (!PyArg_ParseTuple(args, "OLpLLO:fullgrad", &seeds_object, &k, &sum_terms, &height, &width,
                          &maps_object)) {
        return NULL;
    }
    if (trace_acquire(self) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_buffer seeds, maps;
    if (trace_seeds_get(self, seeds_object, k, &seeds) < 0) {
        goto done;
    }
    if (get_float32_buffer(maps_object, &maps, 1, "maps") < 0) {
        goto release_seeds;
    }
    char message[MESSAGE_CAPACITY];
    message[0] = '\0';
    swiftcam_status status;
    Py_BEGIN_ALLOW_THREADS
    status = swiftcam_trace_fullgrad(self->trace, (const float *)seeds.buf, (int64_t)k,
                                     (int32_t)sum_terms, (int64_t)height, (int64_t)width,
                                     (float *)maps.buf, element_count(&maps), message,
                                     MESSAGE_CAPACITY);
    Py_END_ALLOW_THREADS
    result = none_or_raise(status, message);
    PyBuffer_Release(&maps);
release_seeds:
    PyBuffer_Release(&seeds);
done:
    trace_release(self);
    return result;
}

static PyMethodDef Trace_methods[] = {
    {"close", (PyCFunction)Trace_close, METH_NOARGS,
     "close()\n--\n\nFree the trace (deferred while a call is running)."},
    {"logits", (PyCFunction)Trace_logits, METH_VARARGS,
     "logits(out)\n--\n\nCopy the logits (N, classes) into out."},
    {"activation", (PyCFunction)Trace_activation, METH_VARARGS,
     "activation(position, out)\n--\n\nCopy the position-th requested layer's activation."},
    {"backward", (PyCFunction)Trace_backward, METH_VARARGS,
     "backward(seeds, seeds_per_image, gradients)\n--\n\nGradients of K scores per image "
     "with respect to every requested layer."},
    {"guided_backward", (PyCFunction)Trace_guided_backward, METH_VARARGS,
     "guided_backward(seeds, seeds_per_image, gradients)\n--\n\nAs backward, with guided "
     "backpropagation's rule at every ReLU."},
    {"cam", (PyCFunction)Trace_cam, METH_VARARGS,
     "cam(method, eigen_smooth, height, width, seeds, seeds_per_image, heatmaps, raw_maps)\n"
     "--\n\nClass activation maps (N, K, height, width) and, optionally, raw per-layer maps."},
    {"fullgrad", (PyCFunction)Trace_fullgrad, METH_VARARGS,
     "fullgrad(seeds, seeds_per_image, sum_terms, height, width, maps)\n--\n\nFullGrad terms "
     "(N, K, T, height, width), or their sum (N, K, height, width) with sum_terms; the trace "
     "must include LAYER_INPUT."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Trace_getset[] = {
    {"closed", (getter)Trace_get_closed, NULL, "True once close() was called.", NULL},
    {"batch", (getter)Trace_get_batch, NULL, "N of the traced input.", NULL},
    {"layer_count", (getter)Trace_get_layer_count, NULL, "Number of requested layers.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TraceType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "swiftcam._native.Trace",
    .tp_basicsize = sizeof(TraceObject),
    .tp_dealloc = (destructor)Trace_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One forward pass kept for backward passes and CAMs (low level).",
    .tp_methods = Trace_methods,
    .tp_getset = Trace_getset,
};

/* ---------------------------------------------------------------------------------------------
 * Module functions
 * ------------------------------------------------------------------------------------------- */

/* load_file(path: str | bytes | os.PathLike) -> Model */
static PyObject *
native_load_file(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *path_bytes = NULL;
    if (!PyArg_ParseTuple(args, "O&:load_file", PyUnicode_FSConverter, &path_bytes)) {
        return NULL;
    }
    const char *path = PyBytes_AS_STRING(path_bytes);
    char message[MESSAGE_CAPACITY];
    message[0] = '\0';
    swiftcam_model *model = NULL;
    swiftcam_status status;
    Py_BEGIN_ALLOW_THREADS
    status = swiftcam_model_load_file(path, &model, message, MESSAGE_CAPACITY);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_bytes);
    if (status != SWIFTCAM_STATUS_OK) {
        return raise_status(status, message);
    }
    if (model == NULL) {
        PyErr_SetString(PyExc_SystemError, "swiftcam_model_load_file returned no model");
        return NULL;
    }
    return model_wrap(model);
}

/* A caller's (name, float32 buffer) pairs as swiftcam_tensor_views, holding every object and
   buffer they point into until tensor_list_release. */
typedef struct {
    PyObject *items;  /* tuple of the input items */
    PyObject *pairs;  /* tuple of (name, tensor) tuples */
    Py_buffer *views;
    swiftcam_tensor_view *tensors;
    int64_t *shapes;
    Py_ssize_t count;
    Py_ssize_t held; /* buffers acquired so far */
} TensorList;

static void
tensor_list_release(TensorList *list)
{
    for (Py_ssize_t i = 0; i < list->held; i++) {
        PyBuffer_Release(&list->views[i]);
    }
    PyMem_Free(list->views);
    PyMem_Free(list->tensors);
    PyMem_Free(list->shapes);
    Py_XDECREF(list->pairs);
    Py_XDECREF(list->items);
    memset(list, 0, sizeof(*list));
}

/* Fills `list` from a sequence of (name: str, tensor) pairs; -1 with an exception on failure
   (the list is released then). */
static int
tensor_list_build(TensorList *list, PyObject *items_object, const char *what)
{
    memset(list, 0, sizeof(*list));
    /* Own every object we point into, so that other threads cannot drop them meanwhile. */
    list->items = PySequence_Tuple(items_object);
    if (list->items == NULL) {
        return -1;
    }
    list->count = PyTuple_GET_SIZE(list->items);
    size_t n = (size_t)(list->count > 0 ? list->count : 1);
    list->pairs = PyTuple_New(list->count);
    list->views = PyMem_Calloc(n, sizeof(Py_buffer));
    list->tensors = PyMem_Calloc(n, sizeof(swiftcam_tensor_view));
    list->shapes = PyMem_Calloc(n * PyBUF_MAX_NDIM + 1, sizeof(int64_t));
    if (list->pairs == NULL || list->views == NULL || list->tensors == NULL || list->shapes == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        goto fail;
    }
    for (Py_ssize_t i = 0; i < list->count; i++) {
        PyObject *pair = PySequence_Tuple(PyTuple_GET_ITEM(list->items, i));
        if (pair == NULL) {
            goto fail;
        }
        PyTuple_SET_ITEM(list->pairs, i, pair);
        if (PyTuple_GET_SIZE(pair) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(pair, 0))) {
            PyErr_Format(PyExc_TypeError, "%s: expected (name: str, tensor) pairs", what);
            goto fail;
        }
        Py_ssize_t name_size;
        const char *name = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(pair, 0), &name_size);
        if (name == NULL) {
            goto fail;
        }
        if ((size_t)name_size != strlen(name)) { /* C would see a shorter, other name */
            PyErr_Format(InvalidInputError, "tensor name %R contains a NUL character",
                         PyTuple_GET_ITEM(pair, 0));
            goto fail;
        }
        if (get_float32_buffer(PyTuple_GET_ITEM(pair, 1), &list->views[i], 0, name) < 0) {
            goto fail;
        }
        list->held = i + 1;
        int64_t *shape = list->shapes + (size_t)i * PyBUF_MAX_NDIM;
        for (int d = 0; d < list->views[i].ndim; d++) {
            shape[d] = (int64_t)list->views[i].shape[d];
        }
        list->tensors[i].name = name;
        list->tensors[i].data = (const float *)list->views[i].buf;
        list->tensors[i].shape = shape;
        list->tensors[i].rank = (int64_t)list->views[i].ndim;
    }
    return 0;
fail:
    tensor_list_release(list);
    return -1;
}

/* load_tensors(items: sequence of (name: str, tensor: float32 C-contiguous buffer)) -> Model */
static PyObject *
native_load_tensors(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *items_object;
    TensorList list;
    if (!PyArg_ParseTuple(args, "O:load_tensors", &items_object) ||
        tensor_list_build(&list, items_object, "load_tensors") < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    char message[MESSAGE_CAPACITY];
    message[0] = '\0';
    swiftcam_model *model = NULL;
    swiftcam_status status;
    Py_BEGIN_ALLOW_THREADS
    status = swiftcam_model_load_tensors(list.tensors, (int64_t)list.count, &model, message,
                                         MESSAGE_CAPACITY);
    Py_END_ALLOW_THREADS
    if (status != SWIFTCAM_STATUS_OK) {
        raise_status(status, message);
    }
    else if (model == NULL) {
        PyErr_SetString(PyExc_SystemError, "swiftcam_model_load_tensors returned no model");
    }
    else {
        result = model_wrap(model);
    }
    tensor_list_release(&list);
    return result;
}

/* Model.update_tensors(items) replaces the weights in place (same architecture). */
static PyObject *
Model_update_tensors(ModelObject *self, PyObject *args)
{
    PyObject *items_object;
    TensorList list;
    if (!PyArg_ParseTuple(args, "O:update_tensors", &items_object)) {
        return NULL;
    }
    if (model_acquire(self) < 0) {
        return NULL;
    }
    if (tensor_list_build(&list, items_object, "update_tensors") < 0) {
        model_release(self);
        return NULL;
    }
    PyObject *result = NULL;
    char message[MESSAGE_CAPACITY];
    message[0] = '\0';
    swiftcam_status status;
    Py_BEGIN_ALLOW_THREADS
    status = swiftcam_model_update_tensors(self->model, list.tensors, (int64_t)list.count,
                                           message, MESSAGE_CAPACITY);
    Py_END_ALLOW_THREADS
    if (status != SWIFTCAM_STATUS_OK) {
        raise_status(status, message);
    }
    else {
        result = Py_NewRef(Py_None);
    }
    tensor_list_release(&list);
    model_release(self);
    return result;
}

static PyObject *
native_status_string(PyObject *Py_UNUSED(module), PyObject *args)
{
    int status;
    if (!PyArg_ParseTuple(args, "i:status_string", &status)) {
        return NULL;
    }
    return string_or_empty(swiftcam_status_string((swiftcam_status)status));
}

static PyObject *
native_set_num_threads(PyObject *Py_UNUSED(module), PyObject *args)
{
    long long n;
    if (!PyArg_ParseTuple(args, "L:set_num_threads", &n)) {
        return NULL;
    }
    char message[MESSAGE_CAPACITY];
    /* swiftcam_set_num_threads writes no message. */
    snprintf(message, MESSAGE_CAPACITY,
             "the number of threads must be between 1 and 4096, got %lld", n);
    swiftcam_status status = swiftcam_set_num_threads((int64_t)n);
    if (status != SWIFTCAM_STATUS_OK) {
        return raise_status(status, message);
    }
    Py_RETURN_NONE;
}

static PyObject *
native_get_num_threads(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLongLong((long long)swiftcam_get_num_threads());
}

static PyObject *
native_blas_core_name(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return string_or_empty(swiftcam_blas_core_name());
}

static PyObject *
native_gemm_kernel_name(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return string_or_empty(swiftcam_gemm_kernel_name());
}

static PyMethodDef native_methods[] = {
    {"load_file", native_load_file, METH_VARARGS,
     "load_file(path)\n--\n\nLoad a ResNet from a .safetensors file (GIL released)."},
    {"load_tensors", native_load_tensors, METH_VARARGS,
     "load_tensors(items)\n--\n\nLoad a ResNet from (name, float32 buffer) pairs "
     "(GIL released)."},
    {"status_string", native_status_string, METH_VARARGS,
     "status_string(status)\n--\n\nThe engine's name for a status code."},
    {"set_num_threads", native_set_num_threads, METH_VARARGS,
     "set_num_threads(n)\n--\n\nThreads of OpenBLAS's pool (process-wide)."},
    {"get_num_threads", native_get_num_threads, METH_NOARGS,
     "get_num_threads()\n--\n\nThreads of OpenBLAS's pool."},
    {"blas_core_name", native_blas_core_name, METH_NOARGS,
     "blas_core_name()\n--\n\nThe CPU kernel family OpenBLAS selected."},
    {"gemm_kernel_name", native_gemm_kernel_name, METH_NOARGS,
     "gemm_kernel_name()\n--\n\nWhat runs the convolutions' forward products."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "swiftcam._native",
    .m_doc = "CPython binding of the swiftcam C ABI (buffer protocol in, GIL released).",
    .m_size = -1,
    .m_methods = native_methods,
};

static int
add_int(PyObject *module, const char *name, long value)
{
    return PyModule_AddIntConstant(module, name, value);
}

PyMODINIT_FUNC
PyInit__native(void)
{
    PyObject *errors = PyImport_ImportModule("swiftcam.errors");
    if (errors == NULL) {
        return NULL;
    }
    error_for_status_function = PyObject_GetAttrString(errors, "error_for_status");
    InvalidInputError = PyObject_GetAttrString(errors, "InvalidInputError");
    BufferSizeError = PyObject_GetAttrString(errors, "BufferSizeError");
    ModelClosedError = PyObject_GetAttrString(errors, "ModelClosedError");
    Py_DECREF(errors);
    if (error_for_status_function == NULL || InvalidInputError == NULL ||
        BufferSizeError == NULL || ModelClosedError == NULL) {
        return NULL;
    }
    if (PyType_Ready(&ModelType) < 0 || PyType_Ready(&TraceType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&native_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Model", (PyObject *)&ModelType) < 0 ||
        PyModule_AddObjectRef(module, "Trace", (PyObject *)&TraceType) < 0 ||
        add_int(module, "LAYER_INPUT", SWIFTCAM_LAYER_INPUT) < 0 ||
        add_int(module, "METHOD_GRADCAM", SWIFTCAM_METHOD_GRADCAM) < 0 ||
        add_int(module, "METHOD_HIRESCAM", SWIFTCAM_METHOD_HIRESCAM) < 0 ||
        add_int(module, "METHOD_GRADCAM_ELEMENTWISE", SWIFTCAM_METHOD_GRADCAM_ELEMENTWISE) < 0 ||
        add_int(module, "METHOD_GRADCAM_PLUSPLUS", SWIFTCAM_METHOD_GRADCAM_PLUSPLUS) < 0 ||
        add_int(module, "METHOD_XGRADCAM", SWIFTCAM_METHOD_XGRADCAM) < 0 ||
        add_int(module, "METHOD_LAYERCAM", SWIFTCAM_METHOD_LAYERCAM) < 0 ||
        add_int(module, "METHOD_EIGENCAM", SWIFTCAM_METHOD_EIGENCAM) < 0 ||
        add_int(module, "METHOD_EIGENGRADCAM", SWIFTCAM_METHOD_EIGENGRADCAM) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
