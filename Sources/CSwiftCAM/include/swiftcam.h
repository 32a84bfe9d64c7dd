/*
 * swiftcam.h: the C ABI of swiftcam, the single source of truth for every binding.
 *
 * Conventions
 * - Every fallible function returns a swiftcam_status and, on failure, writes a NUL-terminated
 *   human-readable message into (message, message_capacity) when message is not NULL.
 * - Sizes and indices are int64_t. Tensors are float32, C-contiguous (row-major), NCHW.
 * - Outputs are allocated by the caller; each output buffer comes with its element count, which
 *   must equal the expected count exactly (SWIFTCAM_STATUS_BUFFER_SIZE otherwise).
 * - Nothing passed across this ABI can make the library trap: every argument is validated.
 *
 * Threading
 * - A swiftcam_model is immutable after loading. Any number of threads may call functions on the
 *   same model at once; each call uses its own workspace.
 * - A swiftcam_trace belongs to one thread at a time (it is not locked).
 * - Each call splits its work across swiftcam_get_num_threads() threads (OpenBLAS itself runs
 *   single-threaded inside them, so the two never oversubscribe the cores).
 */
#ifndef SWIFTCAM_H
#define SWIFTCAM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. Append-only: existing values never change meaning. */
typedef int32_t swiftcam_status;
#define SWIFTCAM_STATUS_OK 0
#define SWIFTCAM_STATUS_INVALID_ARGUMENT 1  /* null pointer, negative size, bad option        */
#define SWIFTCAM_STATUS_IO_ERROR 2          /* a file cannot be opened, read or mapped         */
#define SWIFTCAM_STATUS_INVALID_FILE 3      /* a file is not well-formed safetensors           */
#define SWIFTCAM_STATUS_WEIGHT_ERROR 4      /* a tensor is missing, unexpected or mis-shaped   */
#define SWIFTCAM_STATUS_UNSUPPORTED_MODEL 5 /* the weights do not describe a supported network */
#define SWIFTCAM_STATUS_INPUT_SHAPE 6       /* the input does not fit the network              */
#define SWIFTCAM_STATUS_OUT_OF_MEMORY 7     /* a buffer could not be allocated                 */
#define SWIFTCAM_STATUS_UNKNOWN_LAYER 8     /* a layer index is out of range                   */
#define SWIFTCAM_STATUS_BUFFER_SIZE 9       /* a caller's buffer has the wrong element count   */

/* A static string naming a status ("ok", "invalid argument", ...); never NULL. */
const char *swiftcam_status_string(swiftcam_status status);

/* ---------------------------------------------------------------------------------------------
 * Models
 * ------------------------------------------------------------------------------------------- */

typedef struct swiftcam_model swiftcam_model;

/* One named tensor supplied by the caller: float32, C-contiguous. Read during loading only. */
typedef struct swiftcam_tensor_view {
    const char *name;     /* torchvision state-dict key, e.g. "layer1.0.conv1.weight" */
    const float *data;    /* product(shape) floats                                     */
    const int64_t *shape; /* rank entries                                              */
    int64_t rank;
} swiftcam_tensor_view;

/* Loads a ResNet from a .safetensors file (memory-mapped; F32, F16, BF16 and F64 tensors). */
swiftcam_status swiftcam_model_load_file(const char *path, swiftcam_model **model,
                                         char *message, int64_t message_capacity);

/* Loads a ResNet from named tensors (torchvision key names). Tensor data are not retained. */
swiftcam_status swiftcam_model_load_tensors(const swiftcam_tensor_view *tensors, int64_t count,
                                            swiftcam_model **model,
                                            char *message, int64_t message_capacity);

/* Replaces a model's weights with new ones for the same architecture (same layout, classes and
   input channels; SWIFTCAM_STATUS_WEIGHT_ERROR otherwise), e.g. once per epoch of a training loop.
   Calls already running finish with the old weights; later calls and traces use the new ones.
   Layer names and other strings handed out before stay valid. */
swiftcam_status swiftcam_model_update_tensors(swiftcam_model *model, const swiftcam_tensor_view *tensors,
                                              int64_t count, char *message, int64_t message_capacity);

/* Frees a model. NULL is ignored. */
void swiftcam_model_free(swiftcam_model *model);

/* Architecture name, e.g. "resnet50"; "resnet" for a layout torchvision does not name.
   The string lives as long as the model. */
const char *swiftcam_model_architecture(const swiftcam_model *model);

/* Describes the inferred configuration as a small JSON object (block type, blocks per stage,
   stage widths, groups, width per group, classes). The string lives as long as the model. */
const char *swiftcam_model_description(const swiftcam_model *model);

int64_t swiftcam_model_num_classes(const swiftcam_model *model);
int64_t swiftcam_model_input_channels(const swiftcam_model *model);

/* Layers that can be inspected or targeted, in forward order, named as torchvision's modules:
   "conv1", "bn1", "relu", "maxpool", "layer1", "layer1.0", ..., "layer4", "layer4.2", "avgpool".
   A stage ("layer4") and its last block ("layer4.2") are the same tensor. */
int64_t swiftcam_model_layer_count(const swiftcam_model *model);
/* NULL when index is out of range. The string lives as long as the model. */
const char *swiftcam_model_layer_name(const swiftcam_model *model, int64_t index);

/* The (N, C, h, w) shape of layer `layer` for an input of shape input_shape[4] = (N, C, H, W). */
swiftcam_status swiftcam_model_layer_shape(const swiftcam_model *model, int64_t layer,
                                           const int64_t *input_shape, int64_t *output_shape,
                                           char *message, int64_t message_capacity);

/* logits (N, num_classes) = model(input (N, C, H, W)). */
swiftcam_status swiftcam_model_forward(const swiftcam_model *model, const float *input,
                                       const int64_t *input_shape, float *logits,
                                       int64_t logits_count,
                                       char *message, int64_t message_capacity);

/* logits (B, num_classes) from activation (B, C, h, w), an output of layer `layer`: runs only the
   part of the network above that layer (AblationCAM). The activation is read in place. */
swiftcam_status swiftcam_model_forward_from(const swiftcam_model *model, int64_t layer,
                                            const float *activation, const int64_t *activation_shape,
                                            float *logits, int64_t logits_count,
                                            char *message, int64_t message_capacity);

/* The input address the most recent forward pass or trace of this model read from, for tests
   that prove inputs cross the ABI without a copy. */
int64_t swiftcam_model_last_input_address(const swiftcam_model *model);

/* ---------------------------------------------------------------------------------------------
 * Traces: one forward pass kept for backward passes and CAMs
 * ------------------------------------------------------------------------------------------- */

typedef struct swiftcam_trace swiftcam_trace;

/* In swiftcam_trace_create's layer list: the network's input (N, C, H, W) itself, for gradients
   down to the image (guided backpropagation). Its "activation" is a copy of the input. */
#define SWIFTCAM_LAYER_INPUT (-1)

/* Runs the forward pass on input (N, C, H, W) and keeps the activations of the requested layers
   (indices into the layer list, any order, no duplicates) and what a backward pass from the
   logits down to the deepest of them needs. The input is not retained. */
swiftcam_status swiftcam_trace_create(const swiftcam_model *model, const float *input,
                                      const int64_t *input_shape, const int64_t *layers,
                                      int64_t layer_count, swiftcam_trace **trace,
                                      char *message, int64_t message_capacity);

/* Frees a trace. NULL is ignored. A trace must be freed before its model. */
void swiftcam_trace_free(swiftcam_trace *trace);

/* logits (N, num_classes). They equal swiftcam_model_forward's up to float rounding (~1e-6 of the
   largest logit): the plain forward pass fuses the stem's batch norm into conv1, a trace does not. */
swiftcam_status swiftcam_trace_logits(const swiftcam_trace *trace, float *logits, int64_t count,
                                      char *message, int64_t message_capacity);

/* The activation (N, C_i, h_i, w_i) of the position-th requested layer. */
swiftcam_status swiftcam_trace_activation(const swiftcam_trace *trace, int64_t position,
                                          float *activation, int64_t count,
                                          char *message, int64_t message_capacity);

/* Backward pass. seeds (N, K, num_classes) are d(score)/d(logits) for K scores per image;
   gradients[i] (N, K, C_i, h_i, w_i) receives d(score)/d(activation) of the i-th requested
   layer, with gradient_counts[i] its element count. No weight gradients are computed. */
swiftcam_status swiftcam_trace_backward(const swiftcam_trace *trace, const float *seeds,
                                        int64_t seeds_per_image, float *const *gradients,
                                        const int64_t *gradient_counts,
                                        char *message, int64_t message_capacity);

/* As swiftcam_trace_backward, with guided backpropagation's rule at every ReLU: a gradient passes
   only where it is positive and the forward output was positive. */
swiftcam_status swiftcam_trace_guided_backward(const swiftcam_trace *trace, const float *seeds,
                                               int64_t seeds_per_image, float *const *gradients,
                                               const int64_t *gradient_counts,
                                               char *message, int64_t message_capacity);

/* CAM methods, as in pytorch-grad-cam. Append-only. */
#define SWIFTCAM_METHOD_GRADCAM 0
#define SWIFTCAM_METHOD_HIRESCAM 1
#define SWIFTCAM_METHOD_GRADCAM_ELEMENTWISE 2
#define SWIFTCAM_METHOD_GRADCAM_PLUSPLUS 3
#define SWIFTCAM_METHOD_XGRADCAM 4
#define SWIFTCAM_METHOD_LAYERCAM 5
#define SWIFTCAM_METHOD_EIGENCAM 6
#define SWIFTCAM_METHOD_EIGENGRADCAM 7

typedef struct swiftcam_cam_options {
    int32_t method;        /* SWIFTCAM_METHOD_*                                        */
    int32_t eigen_smooth;  /* non-zero: first principal component of the weighted map */
    int64_t output_height; /* heatmap size, usually the input's (H, W)                 */
    int64_t output_width;
} swiftcam_cam_options;

/* Class activation maps for K scores per image, from one backward pass.
   seeds (N, K, num_classes) as for swiftcam_trace_backward (ignored by EIGENCAM, may be NULL).
   heatmaps (N, K, output_height, output_width): per layer ReLU, min-max normalisation and
   bilinear resize; over layers ReLU, mean and a second min-max normalisation (as the reference).
   raw_maps: NULL, or layer_count pointers; raw_maps[i] (N, K, h_i, w_i) receives the i-th layer's
   map before ReLU and normalisation, with raw_counts[i] its element count. */
swiftcam_status swiftcam_trace_cam(const swiftcam_trace *trace, const swiftcam_cam_options *options,
                                   const float *seeds, int64_t seeds_per_image, float *heatmaps,
                                   int64_t heatmaps_count, float *const *raw_maps,
                                   const int64_t *raw_counts,
                                   char *message, int64_t message_capacity);

/* ---------------------------------------------------------------------------------------------
 * FullGrad (Srinivas & Fleuret 2019, as pytorch-grad-cam 1.5.7's FullGrad)
 * ------------------------------------------------------------------------------------------- */

/* Layers with a bias whose output gradients FullGrad uses, in module order: for a torchvision
   ResNet every BatchNorm2d (bn1, then per block bn1, bn2, [bn3], [downsample.1]). -1 for NULL. */
int64_t swiftcam_model_bias_layer_count(const swiftcam_model *model);

/* FullGrad of K scores per image from one backward pass down to the input. The trace must have
   been created with SWIFTCAM_LAYER_INPUT among its layers (SWIFTCAM_STATUS_INVALID_ARGUMENT
   otherwise). seeds (N, K, num_classes) as for swiftcam_trace_backward.
   Terms, T = C (input channels) + swiftcam_model_bias_layer_count, in this order:
   - t < C: |d(score)/d(input) * input| of input channel t, min-max normalised;
   - then one per bias layer l: sum over its channels c of min-max(|bias_c * d(score)/d(output_c)|),
     resized bilinearly (half-pixel centres, as cv2.resize INTER_LINEAR) to the output size.
   min-max(x) = (x - min) / (1e-7 + max(x - min)), per map.
   maps: sum_terms == 0: (N, K, T, output_height, output_width), each term;
         sum_terms != 0: (N, K, output_height, output_width), the sum over terms.
   maps_count must equal that element count (SWIFTCAM_STATUS_BUFFER_SIZE otherwise). The heatmap
   of the reference is min-max(sum over terms), per map; it is not applied here. */
swiftcam_status swiftcam_trace_fullgrad(const swiftcam_trace *trace, const float *seeds,
                                        int64_t seeds_per_image, int32_t sum_terms,
                                        int64_t output_height, int64_t output_width,
                                        float *maps, int64_t maps_count,
                                        char *message, int64_t message_capacity);

/* ---------------------------------------------------------------------------------------------
 * Runtime
 * ------------------------------------------------------------------------------------------- */

/* Threads each call may use (process-wide), 1 to 4096; anything else is
   SWIFTCAM_STATUS_INVALID_ARGUMENT. The default is OpenBLAS's (OPENBLAS_NUM_THREADS, else the
   number of cores); from the first call on, OpenBLAS's own pool is set to one thread. */
swiftcam_status swiftcam_set_num_threads(int64_t n);
int64_t swiftcam_get_num_threads(void);
/* The CPU kernel family OpenBLAS selected, e.g. "SkylakeX" or "Prescott". */
const char *swiftcam_blas_core_name(void);
/* What runs the convolutions' forward products: "swiftcam-avx512" (swiftcam's own kernel on
   weights packed at load time, on CPUs with AVX-512) or "openblas" (elsewhere, or when the
   environment variable SWIFTCAM_GEMM=openblas was set before the first model was loaded). */
const char *swiftcam_gemm_kernel_name(void);

#ifdef __cplusplus
}
#endif

#endif /* SWIFTCAM_H */
