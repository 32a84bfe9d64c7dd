/*
 * abi_exercise.c: drives every function of the swiftcam C ABI (swiftcam.h), the successful
 * paths and the failing ones, and frees everything, so that valgrind memcheck can check the
 * Swift engine for leaks and invalid memory accesses without a Python interpreter in the way.
 * Build and run: tools/stress/valgrind.sh. Exit status 0 when every call returned what it
 * should; valgrind's own verdict is in its report.
 *
 * Usage: abi_exercise <weights.safetensors> [rounds]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "swiftcam.h"

static int failures = 0;
static char message[1024];

#define EXPECT(condition, what)                                                      \
    do {                                                                             \
        if (!(condition)) {                                                          \
            fprintf(stderr, "FAILED: %s (line %d): %s\n", what, __LINE__, message); \
            failures++;                                                              \
        }                                                                            \
    } while (0)

static float *filled(int64_t count, float scale)
{
    float *data = malloc(sizeof(float) * (size_t)(count > 0 ? count : 1));
    for (int64_t i = 0; i < count; i++) {
        data[i] = scale * (float)((i * 7919) % 1000 - 500) / 500.0f;
    }
    return data;
}

static int64_t product(const int64_t *shape, int n)
{
    int64_t p = 1;
    for (int i = 0; i < n; i++) {
        p *= shape[i];
    }
    return p;
}

static void exercise_model(swiftcam_model *model)
{
    int64_t classes = swiftcam_model_num_classes(model);
    int64_t channels = swiftcam_model_input_channels(model);
    int64_t layer_count = swiftcam_model_layer_count(model);
    EXPECT(classes > 0 && channels > 0 && layer_count > 0, "model properties");
    EXPECT(swiftcam_model_architecture(model) != NULL, "architecture");
    EXPECT(swiftcam_model_description(model) != NULL, "description");
    EXPECT(swiftcam_model_layer_name(model, layer_count) == NULL, "layer name out of range");
    EXPECT(swiftcam_model_layer_name(model, -1) == NULL, "layer name negative");

    int64_t shape[4] = {2, channels, 37, 29};
    float *input = filled(product(shape, 4), 1.0f);
    float *logits = malloc(sizeof(float) * (size_t)(2 * classes));

    /* forward: ok, wrong buffer size, bad shapes, NULLs */
    EXPECT(swiftcam_model_forward(model, input, shape, logits, 2 * classes, message,
                                  sizeof message) == SWIFTCAM_STATUS_OK, "forward");
    EXPECT(swiftcam_model_forward(model, input, shape, logits, 2 * classes - 1, message,
                                  sizeof message) == SWIFTCAM_STATUS_BUFFER_SIZE, "buffer size");
    int64_t bad_shape[4] = {2, channels + 1, 37, 29};
    EXPECT(swiftcam_model_forward(model, input, bad_shape, logits, 2 * classes, message,
                                  sizeof message) == SWIFTCAM_STATUS_INPUT_SHAPE, "channels");
    int64_t empty_shape[4] = {2, channels, 0, 29};
    EXPECT(swiftcam_model_forward(model, input, empty_shape, logits, 2 * classes, message,
                                  sizeof message) == SWIFTCAM_STATUS_INPUT_SHAPE, "empty");
    int64_t huge_shape[4] = {INT64_MAX / 2, channels, 1 << 20, 1 << 20};
    EXPECT(swiftcam_model_forward(model, input, huge_shape, logits, 2 * classes, message,
                                  sizeof message) != SWIFTCAM_STATUS_OK, "huge shape");
    EXPECT(swiftcam_model_forward(model, NULL, shape, logits, 2 * classes, message,
                                  sizeof message) == SWIFTCAM_STATUS_INVALID_ARGUMENT, "NULL input");
    EXPECT(swiftcam_model_forward(NULL, input, shape, logits, 2 * classes, NULL, 0)
           == SWIFTCAM_STATUS_INVALID_ARGUMENT, "NULL model, NULL message");
    char tiny[3];
    EXPECT(swiftcam_model_forward(model, input, bad_shape, logits, 2 * classes, tiny,
                                  sizeof tiny) != SWIFTCAM_STATUS_OK && tiny[2] == '\0',
           "message truncated to its capacity");

    /* layer shapes */
    int64_t out_shape[4];
    EXPECT(swiftcam_model_layer_shape(model, layer_count - 1, shape, out_shape, message,
                                      sizeof message) == SWIFTCAM_STATUS_OK, "layer shape");
    EXPECT(swiftcam_model_layer_shape(model, layer_count, shape, out_shape, message,
                                      sizeof message) == SWIFTCAM_STATUS_UNKNOWN_LAYER,
           "layer shape out of range");

    /* a trace of three layers (not in order), every method, raw maps */
    int64_t layers[3] = {layer_count - 2, 0, layer_count / 2};
    swiftcam_trace *trace = NULL;
    EXPECT(swiftcam_trace_create(model, input, shape, layers, 3, &trace, message,
                                 sizeof message) == SWIFTCAM_STATUS_OK && trace != NULL,
           "trace");
    int64_t duplicate[2] = {1, 1};
    swiftcam_trace *bad_trace = NULL;
    EXPECT(swiftcam_trace_create(model, input, shape, duplicate, 2, &bad_trace, message,
                                 sizeof message) != SWIFTCAM_STATUS_OK && bad_trace == NULL,
           "duplicate layers");
    int64_t out_of_range[1] = {layer_count};
    EXPECT(swiftcam_trace_create(model, input, shape, out_of_range, 1, &bad_trace, message,
                                 sizeof message) == SWIFTCAM_STATUS_UNKNOWN_LAYER, "bad layer");
    if (trace != NULL) {
        EXPECT(swiftcam_trace_logits(trace, logits, 2 * classes, message, sizeof message)
               == SWIFTCAM_STATUS_OK, "trace logits");
        float *activations[3];
        int64_t counts[3];
        float *gradients[3];
        float *raw[3];
        int64_t raw_counts[3];
        const int64_t k = 2;
        for (int i = 0; i < 3; i++) {
            int64_t s[4];
            swiftcam_model_layer_shape(model, layers[i], shape, s, message, sizeof message);
            counts[i] = product(s, 4);
            activations[i] = malloc(sizeof(float) * (size_t)counts[i]);
            gradients[i] = malloc(sizeof(float) * (size_t)(counts[i] * k));
            raw_counts[i] = s[0] * k * s[2] * s[3];
            raw[i] = malloc(sizeof(float) * (size_t)raw_counts[i]);
            EXPECT(swiftcam_trace_activation(trace, i, activations[i], counts[i], message,
                                             sizeof message) == SWIFTCAM_STATUS_OK, "activation");
        }
        EXPECT(swiftcam_trace_activation(trace, 3, activations[0], counts[0], message,
                                         sizeof message) != SWIFTCAM_STATUS_OK,
               "activation position out of range");
        float *seeds = filled(2 * k * classes, 0.5f);
        int64_t gradient_counts[3];
        for (int i = 0; i < 3; i++) {
            gradient_counts[i] = counts[i] * k;
        }
        EXPECT(swiftcam_trace_backward(trace, seeds, k, gradients, gradient_counts, message,
                                       sizeof message) == SWIFTCAM_STATUS_OK, "backward");
        gradient_counts[1] -= 1;
        EXPECT(swiftcam_trace_backward(trace, seeds, k, gradients, gradient_counts, message,
                                       sizeof message) == SWIFTCAM_STATUS_BUFFER_SIZE,
               "backward buffer size");
        EXPECT(swiftcam_trace_backward(trace, seeds, -1, gradients, gradient_counts, message,
                                       sizeof message) != SWIFTCAM_STATUS_OK, "negative k");
        int64_t heat_h = 37, heat_w = 29;
        float *heatmaps = malloc(sizeof(float) * (size_t)(2 * k * heat_h * heat_w));
        for (int32_t method = 0; method <= SWIFTCAM_METHOD_EIGENGRADCAM; method++) {
            for (int32_t smooth = 0; smooth <= 1; smooth++) {
                swiftcam_cam_options options = {method, smooth, heat_h, heat_w};
                EXPECT(swiftcam_trace_cam(trace, &options, seeds, k, heatmaps,
                                          2 * k * heat_h * heat_w, raw, raw_counts, message,
                                          sizeof message) == SWIFTCAM_STATUS_OK, "cam");
                EXPECT(swiftcam_trace_cam(trace, &options, seeds, k, heatmaps,
                                          2 * k * heat_h * heat_w, NULL, NULL, message,
                                          sizeof message) == SWIFTCAM_STATUS_OK, "cam, no raw");
            }
        }
        swiftcam_cam_options bad_method = {99, 0, heat_h, heat_w};
        EXPECT(swiftcam_trace_cam(trace, &bad_method, seeds, k, heatmaps,
                                  2 * k * heat_h * heat_w, NULL, NULL, message, sizeof message)
               == SWIFTCAM_STATUS_INVALID_ARGUMENT, "unknown method");
        swiftcam_cam_options bad_size = {0, 0, -3, heat_w};
        EXPECT(swiftcam_trace_cam(trace, &bad_size, seeds, k, heatmaps,
                                  2 * k * heat_h * heat_w, NULL, NULL, message, sizeof message)
               != SWIFTCAM_STATUS_OK, "negative output size");
        swiftcam_cam_options eigen = {SWIFTCAM_METHOD_EIGENCAM, 0, heat_h, heat_w};
        EXPECT(swiftcam_trace_cam(trace, &eigen, NULL, k, heatmaps, 2 * k * heat_h * heat_w,
                                  NULL, NULL, message, sizeof message) == SWIFTCAM_STATUS_OK,
               "EigenCAM without seeds");
        free(heatmaps);
        free(seeds);
        for (int i = 0; i < 3; i++) {
            free(activations[i]);
            free(gradients[i]);
            free(raw[i]);
        }
        swiftcam_trace_free(trace);
    }
    swiftcam_trace_free(NULL);
    free(logits);
    free(input);
}

/* swiftcam_model_load_tensors on its failing paths (its successful path is exercised from
   Python by valgrind.sh, which has the arrays at hand): an incomplete state dict, a duplicate
   name, a negative count, NULL tensors, a negative dimension. */
static void load_tensors_errors(void)
{
    float weight[3 * 3 * 7 * 7];
    memset(weight, 0, sizeof weight);
    int64_t shape[4] = {3, 3, 7, 7};
    swiftcam_tensor_view views[2] = {
        {"conv1.weight", weight, shape, 4},
        {"conv1.weight", weight, shape, 4},
    };
    swiftcam_model *model = NULL;
    EXPECT(swiftcam_model_load_tensors(views, 1, &model, message, sizeof message)
           == SWIFTCAM_STATUS_UNSUPPORTED_MODEL && model == NULL, "incomplete state dict");
    EXPECT(swiftcam_model_load_tensors(views, 2, &model, message, sizeof message)
           != SWIFTCAM_STATUS_OK && model == NULL, "duplicate tensor");
    EXPECT(swiftcam_model_load_tensors(views, -1, &model, message, sizeof message)
           == SWIFTCAM_STATUS_INVALID_ARGUMENT, "negative count");
    EXPECT(swiftcam_model_load_tensors(NULL, 2, &model, message, sizeof message)
           == SWIFTCAM_STATUS_INVALID_ARGUMENT, "NULL tensors");
    int64_t negative[4] = {3, -3, 7, 7};
    swiftcam_tensor_view bad = {"conv1.weight", weight, negative, 4};
    EXPECT(swiftcam_model_load_tensors(&bad, 1, &model, message, sizeof message)
           != SWIFTCAM_STATUS_OK, "negative dimension");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s weights.safetensors [rounds]\n", argv[0]);
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 2;
    for (int round = 0; round < rounds; round++) {
        swiftcam_model *model = NULL;
        EXPECT(swiftcam_model_load_file(argv[1], &model, message, sizeof message)
               == SWIFTCAM_STATUS_OK && model != NULL, "load file");
        if (model != NULL) {
            exercise_model(model);
            swiftcam_model_free(model);
        }
        swiftcam_model *missing = NULL;
        EXPECT(swiftcam_model_load_file("/nonexistent/x.safetensors", &missing, message,
                                        sizeof message) == SWIFTCAM_STATUS_IO_ERROR, "missing");
        EXPECT(swiftcam_model_load_file("/dev/null", &missing, message, sizeof message)
               == SWIFTCAM_STATUS_IO_ERROR, "not a regular file");
        EXPECT(swiftcam_model_load_file("/proc/self/status", &missing, message, sizeof message)
               == SWIFTCAM_STATUS_INVALID_FILE, "not safetensors");
        EXPECT(swiftcam_model_load_file(NULL, &missing, message, sizeof message)
               == SWIFTCAM_STATUS_INVALID_ARGUMENT, "NULL path");
        EXPECT(swiftcam_model_load_file(argv[1], NULL, message, sizeof message)
               == SWIFTCAM_STATUS_INVALID_ARGUMENT, "NULL out pointer");
        load_tensors_errors();
        swiftcam_model_free(NULL);
        EXPECT(swiftcam_set_num_threads(0) == SWIFTCAM_STATUS_INVALID_ARGUMENT, "0 threads");
        EXPECT(swiftcam_set_num_threads(1) == SWIFTCAM_STATUS_OK, "1 thread");
        EXPECT(swiftcam_get_num_threads() == 1, "get threads");
        EXPECT(strlen(swiftcam_status_string(12345)) > 0, "status string");
        EXPECT(swiftcam_blas_core_name() != NULL, "core name");
    }
    if (failures == 0) {
        printf("abi_exercise: %d round(s), every call returned what it should\n", rounds);
    }
    return failures == 0 ? 0 : 1;
}
