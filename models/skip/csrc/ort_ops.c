/* Two onnxruntime custom operators (domain "sparsegate") that compute a gated layer's blocks as
 * the CPU engine does, on its kernels (block_kernels.c, included whole):
 *
 *   GroupedBlocks(x, on, values, weight, bias) -> y (B, K * S)
 *       y[e, block k] = activation(x[e] @ weight[k].T + bias[k]) * values[e, k] where on[e, k],
 *       zeros elsewhere;
 *   GroupedBlocksRead(x, on, values, weight, bias, reader_weight, reader_bias) -> z (B, N)
 *       z[e] = reader_activation(reader_bias + sum over k on of y[e, block k] @ reader_weight[k])
 *
 * with x (B, D) float, on (B, K) bool, values (B, K) float (the gate values, 0 where off),
 * weight (K, S, D) and bias (K, S) the gated layer's, reader_weight (K, S, N) (the reading
 * layer's weight transposed, by block) and reader_bias (N). Both take an optional last input,
 * computed (B, J) bool, where x is a gated layer's output of J blocks (its `on`): each pair
 * then multiplies only the input blocks its example computed there, as the engine does (the
 * others are zeros in x, and their weights are never read). Attributes: `activation` and
 * `reader_activation`, by models.activations' codes. The weights must be initializers: each
 * kernel packs them once, when the session creates it, into the panels the products stream
 * (so the graph keeps them in the plain layout any tool reads). An ONNX graph without views
 * must copy the rows it selects and pad every block to the largest block's examples; here each
 * (example, block) pair on is one row of a grouped product, and nothing else is computed.
 *
 * onnxruntime loads this library with SessionOptions.register_custom_ops_library, which calls
 * RegisterCustomOps. Its C API is a table of function pointers whose order is fixed across
 * releases (new functions are appended); the few this file calls are declared below by their
 * place in that table, for the API version it asks for (ORT_API_VERSION_USED), so no
 * onnxruntime header is needed to build it.
 *
 * Blocks of any size: the products run whole tiles of COLUMNS units, so a block's units are
 * padded to a multiple of COLUMNS with zero weights inside the kernel (work, not results).
 * The products run on the kernels' own thread pool (thread_pool.h), as wide as the machine's
 * online CPUs (SPARSEGATE_OPERATOR_THREADS, read when a session creates the kernel, sets
 * another width), from THREADS_FROM_MACS multiply-adds, as the engine runs them; onnxruntime's
 * intra-op threads run the graph's other nodes. The library is linked never to be unloaded
 * (its pool threads outlive any one session) and exports RegisterCustomOps alone. */
#include "block_kernels.c"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

/* --- the onnxruntime C API, as far as this file uses it -------------------------------------- */

typedef struct OrtStatus OrtStatus;
typedef struct OrtValue OrtValue;
typedef struct OrtKernelInfo OrtKernelInfo;
typedef struct OrtKernelContext OrtKernelContext;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtCustomOpDomain OrtCustomOpDomain;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef void *const *OrtApiTable; /* the OrtApi struct: one function pointer per slot */

typedef struct {
    OrtApiTable (*GetApi)(uint32_t version);
    const char *(*GetVersionString)(void);
} OrtApiBase;

enum { ORT_API_VERSION_USED = 16 };
enum { ELEMENT_FLOAT = 1, ELEMENT_INT64 = 7, ELEMENT_BOOL = 9 };
enum { ORT_FAIL = 1, ORT_INVALID_ARGUMENT = 2 };

/* Places in the OrtApi table (the first 390 are fixed by onnxruntime's own static_asserts). */
enum {
    SLOT_CreateStatus = 0,
    SLOT_CreateCustomOpDomain = 26,
    SLOT_CustomOpDomain_Add = 27,
    SLOT_AddCustomOpDomain = 28,
    SLOT_KernelInfoGetAttribute_int64 = 86,
    SLOT_KernelContext_GetInputCount = 88,
    SLOT_KernelContext_GetInput = 90,
    SLOT_KernelContext_GetOutput = 91,
    SLOT_GetTensorMutableData = 51,
    SLOT_GetTensorTypeAndShape = 65,
    SLOT_GetTensorElementType = 60,
    SLOT_GetDimensionsCount = 61,
    SLOT_GetDimensions = 62,
    SLOT_ReleaseTensorTypeAndShapeInfo = 99,
    SLOT_KernelInfoGetConstantInput_tensor = 249,
};

typedef OrtStatus *(*CreateStatus_fn)(int code, const char *message);
typedef OrtStatus *(*CreateCustomOpDomain_fn)(const char *domain, OrtCustomOpDomain **out);
typedef OrtStatus *(*CustomOpDomain_Add_fn)(OrtCustomOpDomain *domain, const void *op);
typedef OrtStatus *(*AddCustomOpDomain_fn)(OrtSessionOptions *options, OrtCustomOpDomain *domain);
typedef OrtStatus *(*KernelInfoGetAttribute_int64_fn)(const OrtKernelInfo *info, const char *name,
                                                      int64_t *out);
typedef OrtStatus *(*KernelContext_GetInputCount_fn)(const OrtKernelContext *context,
                                                     size_t *out);
typedef OrtStatus *(*KernelContext_GetInput_fn)(const OrtKernelContext *context, size_t index,
                                                const OrtValue **out);
typedef OrtStatus *(*KernelContext_GetOutput_fn)(OrtKernelContext *context, size_t index,
                                                 const int64_t *dims, size_t count,
                                                 OrtValue **out);
typedef OrtStatus *(*GetTensorMutableData_fn)(OrtValue *value, void **out);
typedef OrtStatus *(*GetTensorTypeAndShape_fn)(const OrtValue *value,
                                               OrtTensorTypeAndShapeInfo **out);
typedef OrtStatus *(*GetTensorElementType_fn)(const OrtTensorTypeAndShapeInfo *info, int *out);
typedef OrtStatus *(*GetDimensionsCount_fn)(const OrtTensorTypeAndShapeInfo *info, size_t *out);
typedef OrtStatus *(*GetDimensions_fn)(const OrtTensorTypeAndShapeInfo *info, int64_t *dims,
                                       size_t count);
typedef void (*ReleaseTensorTypeAndShapeInfo_fn)(OrtTensorTypeAndShapeInfo *info);
typedef OrtStatus *(*KernelInfoGetConstantInput_tensor_fn)(const OrtKernelInfo *info,
                                                           size_t index, int *is_constant,
                                                           const OrtValue **out);

static OrtApiTable ort;
#define ORT(name) ((name##_fn)ort[SLOT_##name])
/* Return the status of an API call that failed. */
#define ORT_TRY(call)                                                                              \
    do {                                                                                           \
        OrtStatus *status_ = (call);                                                               \
        if (status_) return status_;                                                               \
    } while (0)

static OrtStatus *op_error(const char *format, ...) __attribute__((format(printf, 1, 2)));
static OrtStatus *op_error(const char *format, ...) {
    char message[512];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    return ORT(CreateStatus)(ORT_INVALID_ARGUMENT, message);
}

/* A tensor's element type and shape (at most 4 dimensions are needed here). */
typedef struct {
    int type;
    size_t rank;
    int64_t dims[4];
} tensor_shape;

static OrtStatus *shape_of(const OrtValue *value, tensor_shape *out) {
    OrtTensorTypeAndShapeInfo *info;
    ORT_TRY(ORT(GetTensorTypeAndShape)(value, &info));
    OrtStatus *status = ORT(GetTensorElementType)(info, &out->type);
    if (!status) status = ORT(GetDimensionsCount)(info, &out->rank);
    if (!status && out->rank <= 4) status = ORT(GetDimensions)(info, out->dims, out->rank);
    ORT(ReleaseTensorTypeAndShapeInfo)(info);
    return status;
}

/* --- the operators -------------------------------------------------------------------------- */

#define THREADS_FROM_MACS 200000 /* as the engine (models/skip/routing.py) */

typedef struct {
    program_stage gated, reader;
    int reads;     /* GroupedBlocksRead */
    int64_t units; /* S, each block's units (the stage computes them padded) */
    void *memory[4]; /* what the kernel owns: packed weights and biases */
    int64_t threads;
} op_kernel;

static void kernel_destroy(void *kernel) {
    op_kernel *k = (op_kernel *)kernel;
    if (!k) return;
    for (int i = 0; i < 4; ++i) free(k->memory[i]);
    free(k);
}

/* The constant input `index`: its data, after checking it is a float32 initializer of `rank`
 * dimensions (written to dims). */
static OrtStatus *constant_input(const OrtKernelInfo *info, size_t index, const char *name,
                                 size_t rank, int64_t *dims, const float **data) {
    int constant = 0;
    const OrtValue *value = 0;
    ORT_TRY(ORT(KernelInfoGetConstantInput_tensor)(info, index, &constant, &value));
    if (!constant || !value)
        return op_error("the %s must be an initializer (the kernel packs it once)", name);
    tensor_shape shape = {0};
    ORT_TRY(shape_of(value, &shape));
    if (shape.type != ELEMENT_FLOAT || shape.rank != rank)
        return op_error("the %s must be a float32 tensor of %zu dimensions", name, rank);
    memcpy(dims, shape.dims, rank * sizeof *dims);
    ORT_TRY(ORT(GetTensorMutableData)((OrtValue *)value, (void **)data));
    return 0;
}

static void *aligned_floats(int64_t count) {
    size_t bytes = (size_t)lone_align(count * 4);
    return aligned_alloc(64, bytes ? bytes : 64);
}

/* weight (K, r, c) row-major, or (K, c, r) where `transposed`, -> panels (K, C / W, R, W) for
 * R >= r rows and C >= c columns, zeros beyond the weight's own: each panel's rows contiguous,
 * as models.skip.c_kernels.Panels packs them. */
static float *pack_panels(const float *weight, int64_t K, int64_t r, int64_t c, int64_t R,
                          int64_t C, int64_t W, int transposed) {
    float *panels = (float *)aligned_floats(K * R * C);
    if (!panels) return 0;
    for (int64_t k = 0; k < K; ++k)
        for (int64_t p = 0; p < C / W; ++p)
            for (int64_t i = 0; i < R; ++i)
                for (int64_t w = 0; w < W; ++w) {
                    const int64_t j = p * W + w;
                    panels[((k * (C / W) + p) * R + i) * W + w] =
                        i >= r || j >= c ? 0.0f
                        : transposed     ? weight[(k * c + j) * r + i]
                                         : weight[(k * r + i) * c + j];
                }
    return panels;
}

/* The products' threads: SPARSEGATE_OPERATOR_THREADS where set (a server running several
 * sessions side by side sets 1), else the machine's online CPUs; at most the pool's size. */
static int64_t operator_threads(void) {
    const char *asked = getenv("SPARSEGATE_OPERATOR_THREADS");
    long n = asked && *asked ? strtol(asked, 0, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > POOL_MAX ? POOL_MAX : n;
}

static OrtStatus *create_kernel(const OrtKernelInfo *info, int reads, void **out) {
    *out = 0;
    op_kernel *k = (op_kernel *)calloc(1, sizeof *k);
    if (!k) return ORT(CreateStatus)(ORT_FAIL, "sparsegate: out of memory");
    OrtStatus *status = 0;
    int64_t activation = 0, reader_activation = 0, wd[3], bd[2], rd[3], rbd[1];
    const float *weight, *bias, *reader_weight = 0, *reader_bias = 0;
    const int64_t width = kernel_panel_width(kernel_set_chosen());
#define CHECK(call)                                                                                \
    if ((status = (call))) goto fail
    CHECK(ORT(KernelInfoGetAttribute_int64)(info, "activation", &activation));
    CHECK(constant_input(info, 3, "weight", 3, wd, &weight));
    CHECK(constant_input(info, 4, "bias", 2, bd, &bias));
    const int64_t K = wd[0], S = wd[1], D = wd[2];
    if (bd[0] != K || bd[1] != S) {
        status = op_error("bias (%lld, %lld) does not match weight (%lld, %lld, %lld)",
                          (long long)bd[0], (long long)bd[1], (long long)K, (long long)S,
                          (long long)D);
        goto fail;
    }
    if (K < 1 || S < 1 || D < 1 || activation < LONE_LINEAR || activation > LONE_SIGMOID) {
        status = op_error("at least one block, unit and input, and an activation code from %d "
                          "to %d are needed; got weight (%lld, %lld, %lld), activation %lld",
                          LONE_LINEAR, LONE_SIGMOID, (long long)K, (long long)S, (long long)D,
                          (long long)activation);
        goto fail;
    }
    /* The kernels' products are whole tiles of COLUMNS units: a block of S units is computed
     * as Sp, its extra units' weights and bias zero (the reader's weights for them too, so
     * they add nothing whatever their activation). */
    const int64_t Sp = (S + COLUMNS - 1) / COLUMNS * COLUMNS;
    k->units = S;
    program_stage *g = &k->gated;
    g->kind = LONE_GATED, g->in_width = D, g->out_width = K * Sp, g->activation = activation;
    g->precision = FLOAT32, g->blocks = K, g->block_size = Sp;
    g->panels = k->memory[0] = pack_panels(weight, K, D, S, D, Sp, width, 1);
    float *padded_bias = (float *)(k->memory[1] = aligned_floats(K * Sp));
    g->bias = padded_bias;
    if (!g->panels || !padded_bias) goto out_of_memory;
    for (int64_t b = 0; b < K; ++b)
        for (int64_t u = 0; u < Sp; ++u) padded_bias[b * Sp + u] = u < S ? bias[b * S + u] : 0.0f;
    if (reads) {
        k->reads = 1;
        CHECK(ORT(KernelInfoGetAttribute_int64)(info, "reader_activation", &reader_activation));
        CHECK(constant_input(info, 5, "reader_weight", 3, rd, &reader_weight));
        CHECK(constant_input(info, 6, "reader_bias", 1, rbd, &reader_bias));
        const int64_t N = rd[2];
        if (rd[0] != K || rd[1] != S || rbd[0] != N || N < 1 || reader_activation < LONE_LINEAR ||
            reader_activation > LONE_SIGMOID) {
            status = op_error("reader_weight must be (%lld, %lld, N) and reader_bias (N), with "
                              "a reader_activation code from %d to %d; got (%lld, %lld, %lld), "
                              "(%lld) and %lld", (long long)K, (long long)S, LONE_LINEAR,
                              LONE_SIGMOID, (long long)rd[0], (long long)rd[1],
                              (long long)rd[2], (long long)rbd[0], (long long)reader_activation);
            goto fail;
        }
        program_stage *r = &k->reader;
        r->kind = LONE_DENSE, r->in_width = K * Sp, r->out_width = N;
        r->activation = reader_activation, r->precision = FLOAT32;
        r->bias = k->memory[2] = aligned_floats(N);
        if (!r->bias) goto out_of_memory;
        memcpy((float *)r->bias, reader_bias, N * 4);
        if (N % COLUMNS == 0) {
            r->panels = k->memory[3] = pack_panels(reader_weight, K, S, N, Sp, N, width, 0);
            if (!r->panels) goto out_of_memory;
        } else { /* no multiple of the panels: each output unit's weights contiguous, (K, N, Sp) */
            float *columns = (float *)(k->memory[3] = aligned_floats(K * N * Sp));
            if (!columns) goto out_of_memory;
            for (int64_t b = 0; b < K; ++b)
                for (int64_t n = 0; n < N; ++n)
                    for (int64_t u = 0; u < Sp; ++u)
                        columns[(b * N + n) * Sp + u] =
                            u < S ? reader_weight[(b * S + u) * N + n] : 0.0f;
            r->columns = columns;
        }
    }
    k->threads = operator_threads();
    *out = k;
    return 0;
out_of_memory:
    status = ORT(CreateStatus)(ORT_FAIL, "sparsegate: out of memory packing the weights");
fail:
    kernel_destroy(k);
    return status;
#undef CHECK
}

/* The operator's input `index`, checked to be (rows, columns) of `type`. */
static OrtStatus *matrix_input(const OrtKernelContext *context, size_t index, const char *name,
                               int type, int64_t rows, int64_t columns, const void **data,
                               int64_t *rows_out) {
    const OrtValue *value;
    ORT_TRY(ORT(KernelContext_GetInput)(context, index, &value));
    tensor_shape shape = {0};
    ORT_TRY(shape_of(value, &shape));
    if (shape.type != type || shape.rank != 2 || (rows >= 0 && shape.dims[0] != rows) ||
        shape.dims[1] != columns)
        return op_error("%s must be (%s, %lld); got %zu dimensions (%lld, %lld)", name,
                        rows >= 0 ? "B" : "batch", (long long)columns, shape.rank,
                        (long long)shape.dims[0], (long long)(shape.rank > 1 ? shape.dims[1] : -1));
    if (rows_out) *rows_out = shape.dims[0];
    return ORT(GetTensorMutableData)((OrtValue *)value, (void **)data);
}

/* Where the optional `computed` input comes: last, after the five or seven others. */
static size_t computed_input(int reads) { return reads ? 7 : 5; }

/* The optional `computed` input (B, J): its J, or 0 where the node has none. */
static OrtStatus *computed_blocks(const OrtKernelContext *context, size_t index, int64_t B,
                                  int64_t D, const uint8_t **data, int64_t *J) {
    size_t count;
    const OrtValue *value = 0;
    *J = 0;
    ORT_TRY(ORT(KernelContext_GetInputCount)(context, &count));
    if (count > index) ORT_TRY(ORT(KernelContext_GetInput)(context, index, &value));
    if (!value) return 0;
    tensor_shape shape = {0};
    ORT_TRY(shape_of(value, &shape));
    if (shape.type != ELEMENT_BOOL || shape.rank != 2 || shape.dims[0] != B ||
        shape.dims[1] < 1 || D % shape.dims[1])
        return op_error("computed must be (B, J) bool with J dividing x's %lld columns; got %zu "
                        "dimensions (%lld, %lld)", (long long)D, shape.rank,
                        (long long)shape.dims[0],
                        (long long)(shape.rank > 1 ? shape.dims[1] : -1));
    *J = shape.dims[1];
    return ORT(GetTensorMutableData)((OrtValue *)value, (void **)data);
}

static OrtStatus *compute(void *kernel, OrtKernelContext *context) {
    const op_kernel *k = (const op_kernel *)kernel;
    const program_stage *g = &k->gated;
    const int64_t K = g->blocks, Sp = g->block_size, S = k->units, D = g->in_width;
    const float *x, *values;
    const uint8_t *on, *computed = 0;
    int64_t B = 0, J;
    ORT_TRY(matrix_input(context, 0, "x", ELEMENT_FLOAT, -1, D, (const void **)&x, &B));
    ORT_TRY(matrix_input(context, 1, "on", ELEMENT_BOOL, B, K, (const void **)&on, 0));
    ORT_TRY(matrix_input(context, 2, "values", ELEMENT_FLOAT, B, K, (const void **)&values, 0));
    ORT_TRY(computed_blocks(context, computed_input(k->reads), B, D, &computed, &J));
    const int64_t width = k->reads ? k->reader.out_width : K * S, dims[2] = {B, width};
    OrtValue *output;
    float *y;
    ORT_TRY(ORT(KernelContext_GetOutput)(context, 0, dims, 2, &output));
    ORT_TRY(ORT(GetTensorMutableData)(output, (void **)&y));
    if (B == 0) return 0;

    const int64_t own = batch_gated_bytes(g, B);
    const int64_t before = J ? lone_align(B * J) + lone_align(B) + B * 8 : 0;
    char *memory = (char *)aligned_alloc(64, (size_t)lone_align(own + before));
    if (!memory) return ORT(CreateStatus)(ORT_FAIL, "sparsegate: out of working memory");
    batch_scratch scratch = batch_carve(g, B, memory);
    /* onnxruntime's bool is one byte, 0 or 1 as its own ops write it; a model's raw bytes may
     * hold any value, and the pair counts must agree with the pairs listed. */
    for (int64_t i = 0; i < B * K; ++i) scratch.reads[i] = on[i] != 0;
    /* After a gated layer: the blocks each example computed there, as the engine's forward
     * passes them from one gated stage to the next (whole rows where every one was). */
    batch_gated_out prev = {0}, pairs;
    if (J) {
        uint8_t *reads = (uint8_t *)memory + own, *whole = reads + lone_align(B * J);
        int64_t *count = (int64_t *)(void *)(whole + lone_align(B));
        for (int64_t b = 0; b < B; ++b) {
            int64_t n = 0;
            for (int64_t j = 0; j < J; ++j) n += reads[b * J + j] = computed[b * J + j] != 0;
            count[b] = n, whole[b] = n == J;
        }
        prev.reads = reads, prev.whole = whole, prev.read_count = count, prev.blocks = J;
    }
    batch_blocks(g, B, x, J ? &prev : 0, values, &scratch, k->reads || Sp != S ? 0 : y,
                 k->threads, THREADS_FROM_MACS, &pairs);
    if (k->reads) {
        batch_dense(&k->reader, B, 0, &pairs, y, 0, k->threads, THREADS_FROM_MACS);
    } else if (Sp != S) { /* each pair's own units into its place, off blocks zero */
        memset(y, 0, (size_t)(B * K * S) * 4);
        for (int64_t i = 0; i < pairs.span_count; ++i) {
            const int64_t b = pairs.spans[3 * i];
            for (int64_t p = pairs.spans[3 * i + 1]; p < pairs.spans[3 * i + 2]; ++p)
                memcpy(y + (pairs.examples[p] * K + b) * S, pairs.pairs + p * Sp, S * 4);
        }
    }
    free(memory);
    return 0;
}

/* --- the OrtCustomOp records ------------------------------------------------------------------ */

/* onnxruntime's OrtCustomOp. With `version` 16 onnxruntime creates and runs kernels through
 * CreateKernelV2 and KernelComputeV2 (which return a status) and reads no member after them;
 * the later ones are declared, and left null, so the record has its full size. */
typedef struct ort_custom_op {
    uint32_t version;
    void *(*CreateKernel)(const struct ort_custom_op *op, OrtApiTable api,
                          const OrtKernelInfo *info);
    const char *(*GetName)(const struct ort_custom_op *op);
    const char *(*GetExecutionProviderType)(const struct ort_custom_op *op);
    int (*GetInputType)(const struct ort_custom_op *op, size_t index);
    size_t (*GetInputTypeCount)(const struct ort_custom_op *op);
    int (*GetOutputType)(const struct ort_custom_op *op, size_t index);
    size_t (*GetOutputTypeCount)(const struct ort_custom_op *op);
    void (*KernelCompute)(void *kernel, OrtKernelContext *context);
    void (*KernelDestroy)(void *kernel);
    int (*GetInputCharacteristic)(const struct ort_custom_op *op, size_t index);
    int (*GetOutputCharacteristic)(const struct ort_custom_op *op, size_t index);
    int (*GetInputMemoryType)(const struct ort_custom_op *op, size_t index);
    int (*GetVariadicInputMinArity)(const struct ort_custom_op *op);
    int (*GetVariadicInputHomogeneity)(const struct ort_custom_op *op);
    int (*GetVariadicOutputMinArity)(const struct ort_custom_op *op);
    int (*GetVariadicOutputHomogeneity)(const struct ort_custom_op *op);
    OrtStatus *(*CreateKernelV2)(const struct ort_custom_op *op, OrtApiTable api,
                                 const OrtKernelInfo *info, void **kernel);
    OrtStatus *(*KernelComputeV2)(void *kernel, OrtKernelContext *context);
    void *later[7]; /* InferOutputShapeFn .. ReleaseAliasMap */
} ort_custom_op;

/* The two records share their callbacks, which tell them apart by the record they are given. */
static const ort_custom_op OP_READ;
static int has_reader(const ort_custom_op *op) { return op == &OP_READ; }

static const char *name(const ort_custom_op *op) {
    return has_reader(op) ? "GroupedBlocksRead" : "GroupedBlocks";
}
static const char *cpu_provider(const ort_custom_op *op) {
    (void)op;
    return "CPUExecutionProvider";
}
static size_t computed_index(const ort_custom_op *op) { return computed_input(has_reader(op)); }
static int input_type(const ort_custom_op *op, size_t index) {
    return index == 1 || index == computed_index(op) ? ELEMENT_BOOL : ELEMENT_FLOAT;
}
static size_t input_count(const ort_custom_op *op) { return computed_index(op) + 1; }
static int output_type(const ort_custom_op *op, size_t index) {
    (void)op, (void)index;
    return ELEMENT_FLOAT;
}
static size_t one_output(const ort_custom_op *op) { (void)op; return 1; }
/* OrtCustomOpInputOutputCharacteristic, for inputs and outputs alike */
enum { CHARACTERISTIC_REQUIRED = 0, CHARACTERISTIC_OPTIONAL = 1 };
static int input_characteristic(const ort_custom_op *op, size_t index) {
    return index == computed_index(op) ? CHARACTERISTIC_OPTIONAL : CHARACTERISTIC_REQUIRED;
}
static int required_output(const ort_custom_op *op, size_t index) {
    (void)op, (void)index;
    return CHARACTERISTIC_REQUIRED;
}
static int cpu_memory(const ort_custom_op *op, size_t index) { (void)op, (void)index; return 0; }
static OrtStatus *create(const ort_custom_op *op, OrtApiTable api, const OrtKernelInfo *info,
                         void **kernel) {
    (void)api;
    return create_kernel(info, has_reader(op), kernel);
}

/* Members left out are null: the variadic ones are read only for variadic inputs. */
#define OP_RECORD                                                                                 \
    .version = ORT_API_VERSION_USED, .GetName = name,                                             \
    .GetExecutionProviderType = cpu_provider, .GetInputType = input_type,                         \
    .GetInputTypeCount = input_count, .GetOutputType = output_type,                               \
    .GetOutputTypeCount = one_output, .KernelDestroy = kernel_destroy,                            \
    .GetInputCharacteristic = input_characteristic,                                               \
    .GetOutputCharacteristic = required_output,                                                   \
    .GetInputMemoryType = cpu_memory, .CreateKernelV2 = create, .KernelComputeV2 = compute
static const ort_custom_op OP_BLOCKS = {OP_RECORD};
static const ort_custom_op OP_READ = {OP_RECORD};

/* The best instruction set the CPU runs, or the one SPARSEGATE_KERNEL_SET names. */
static int choose_set(void) {
    const char *asked = getenv("SPARSEGATE_KERNEL_SET");
    static const char *const names[SETS] = {"generic", "avx2", "avx512"};
    if (asked && *asked) {
        for (int s = 0; s < SETS; ++s)
            if (!strcmp(asked, names[s])) return choose_kernel_set(s);
        return -1;
    }
    const int available = kernel_sets_available();
    for (int s = SETS - 1; s >= 0; --s)
        if (available & (1 << s)) return choose_kernel_set(s);
    return -1;
}

__attribute__((visibility("default"))) OrtStatus *RegisterCustomOps(OrtSessionOptions *options,
                                                                     const OrtApiBase *base) {
    ort = base->GetApi(ORT_API_VERSION_USED);
    if (!ort) { /* an onnxruntime older than the API version used: say so through version 1 */
        OrtApiTable first = base->GetApi(1);
        return first ? ((CreateStatus_fn)first[SLOT_CreateStatus])(
                           ORT_FAIL, "sparsegate's operators need onnxruntime 1.16 or later")
                     : 0;
    }
    /* Once per load: kernels pack their weights for the set chosen, so it never changes. */
    static int set = -2;
    if (set == -2) set = choose_set();
    if (set < 0)
        return ORT(CreateStatus)(ORT_INVALID_ARGUMENT,
                                 "SPARSEGATE_KERNEL_SET names no instruction set this CPU runs");
    /* Then, once too, whether one-row groups and the tiles kernel prefetch
     * (prefetch_probes.h: measured on the set chosen). */
    static int one_row = -2, tiles = -2;
    double medians[PROBE_WAYS_MAX];
    if (one_row == -2) one_row = choose_one_row_prefetch(medians);
    if (one_row < 0)
        return ORT(CreateStatus)(ORT_INVALID_ARGUMENT,
                                 "SPARSEGATE_ONE_ROW_PREFETCH must be off, on or measure");
    if (tiles == -2) tiles = choose_tile_prefetch(medians);
    if (tiles < 0)
        return ORT(CreateStatus)(ORT_INVALID_ARGUMENT,
                                 "SPARSEGATE_TILE_PREFETCH must be off, l1, l2 or measure");
    /* One domain for every session this library serves: onnxruntime keeps a pointer to it and
     * never frees it, so it lives as long as the library. */
    static OrtCustomOpDomain *domain;
    if (!domain) {
        OrtCustomOpDomain *made;
        ORT_TRY(ORT(CreateCustomOpDomain)("sparsegate", &made));
        ORT_TRY(ORT(CustomOpDomain_Add)(made, &OP_BLOCKS));
        ORT_TRY(ORT(CustomOpDomain_Add)(made, &OP_READ));
        domain = made;
    }
    return ORT(AddCustomOpDomain)(options, domain);
}
