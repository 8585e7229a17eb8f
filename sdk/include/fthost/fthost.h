/*
 * fthost.h — the stable C ABI between the fthost host and its plugins.
 *
 * Rules of this boundary (docs/PLUGINS.md explains them with examples):
 *  - One exported symbol per shared library: FTHOST_ENTRY_SYMBOL. It returns an
 *    array of plugin descriptors; a library may carry several plugins.
 *  - Every struct that can grow starts with `uint32_t struct_size` and only ever grows
 *    at its end. Neither side reads a field past struct_size: FT_HAS_FIELD says whether
 *    a struct has a member (the one way either side checks it).
 *  - ABI major must equal the host's. A plugin built against an older minor is loaded;
 *    one built against a newer minor is loaded only if the host knows its struct sizes.
 *  - No C++ type, exception or allocator crosses this boundary: functions return an
 *    ft_status and write a message into the caller's ft_error.
 *  - Tensors cross as opaque ft_tensor handles. In a LibTorch build a handle owns one
 *    reference to a tensor; "new" handles must be released with
 *    ft_host_api.tensor_release, "borrowed" ones must not. Only plugins built with the
 *    host's LibTorch major.minor may touch tensors (the loader checks this).
 *  - Graders use strings only and need no LibTorch at all.
 *  - Plugins are never unloaded.
 */
#ifndef FTHOST_FTHOST_H
#define FTHOST_FTHOST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- versions ------------------------------------------------------------------ */

#define FTHOST_ABI_MAJOR 1
#define FTHOST_ABI_MINOR 9

#define FTHOST_ENTRY_SYMBOL "fthost_plugins_v1"

#if defined(_WIN32)
#define FTHOST_EXPORT __declspec(dllexport)
#else
#define FTHOST_EXPORT __attribute__((visibility("default")))
#endif

/* True when `ptr` (a struct starting with struct_size) was built with `member`: the
   struct reaches past it. A table from an older minor lacks the newer members. */
#define FT_HAS_FIELD(ptr, type, member) \
    ((ptr)->struct_size >= offsetof(type, member) + sizeof(((const type*)0)->member))

/* ---- status and errors ----------------------------------------------------------- */

typedef int32_t ft_status;
#define FT_OK 0
#define FT_ERR_INVALID_ARGUMENT 1 /* the caller passed something unusable */
#define FT_ERR_CONFIG 2           /* a config value is out of range or inconsistent */
#define FT_ERR_RUNTIME 3          /* anything that went wrong while computing */
#define FT_ERR_UNSUPPORTED 4      /* the plugin does not implement this */
#define FT_ERR_OUT_OF_MEMORY 5

#define FT_ERROR_MESSAGE_SIZE 1024
/* Filled by the callee when it returns a status other than FT_OK. */
typedef struct ft_error {
    char message[FT_ERROR_MESSAGE_SIZE];
} ft_error;

/* ---- opaque handles ---------------------------------------------------------------- */

typedef struct ft_tensor_s* ft_tensor;       /* one reference to a LibTorch tensor */
typedef struct ft_config_s ft_config;        /* a plugin's validated config section */
typedef struct ft_model_s ft_model;          /* a model instance (plugin-owned) */
typedef struct ft_param_s ft_param;          /* a parameterisation instance */
typedef struct ft_objective_s ft_objective;  /* an objective instance */
typedef struct ft_grader_s ft_grader;        /* a grader instance */
typedef struct ft_run_s ft_run;              /* the host's view of the running stage */
typedef struct ft_kv_cache_s ft_kv_cache;    /* a model's key/value cache for decoding */
struct ft_batch;                             /* defined below; named in ft_host_api first */

/* Visits named tensors; `tensor` is borrowed for the duration of the call. */
typedef void (*ft_tensor_visitor)(void* user, const char* name, ft_tensor tensor);

/* ---- plugin kinds -------------------------------------------------------------------- */

typedef int32_t ft_kind;
#define FT_KIND_MODEL 1
#define FT_KIND_PARAM 2
#define FT_KIND_OBJECTIVE 3
#define FT_KIND_GRADER 4

/* Which tokens (steps) of an example carry labels, as the objective declares (its
   ft_objective_vtable.label_policy). */
typedef int32_t ft_label_policy;
#define FT_LABELS_ALL 1        /* every token (continued pre-training) */
#define FT_LABELS_COMPLETION 2 /* completion / assistant tokens only */

/* ---- declared options: the host validates a plugin's config section from these ---- */

typedef int32_t ft_option_type;
#define FT_OPT_INT 1
#define FT_OPT_FLOAT 2 /* an integer literal is accepted too */
#define FT_OPT_BOOL 3
#define FT_OPT_STRING 4
#define FT_OPT_STRING_LIST 5

typedef struct ft_option {
    uint32_t struct_size;
    const char* name;
    ft_option_type type;
    int32_t required;          /* 1: the key must be present */
    const char* default_value; /* TOML literal ("8", "0.1", "true", "\"x\"", "[]"), or NULL */
    const char* help;          /* one line, shown by `fthost plugins --options` */
} ft_option;

/* ---- the host's services, handed to every create() ---------------------------------- */

typedef int32_t ft_log_level;
#define FT_LOG_DEBUG 0
#define FT_LOG_INFO 1
#define FT_LOG_WARN 2
#define FT_LOG_ERROR 3

typedef struct ft_host_api {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;

    void (*log)(ft_log_level level, const char* plugin_name, const char* message);

    /* Config look-ups. The host validated the section against the plugin's options
       and filled defaults, so a declared key always has a value of its type. Strings
       stay valid for the life of the config. */
    int32_t (*config_has)(const ft_config* cfg, const char* key);
    int64_t (*config_int)(const ft_config* cfg, const char* key);
    double (*config_float)(const ft_config* cfg, const char* key);
    int32_t (*config_bool)(const ft_config* cfg, const char* key);
    const char* (*config_string)(const ft_config* cfg, const char* key);
    uint32_t (*config_list_size)(const ft_config* cfg, const char* key);
    const char* (*config_list_item)(const ft_config* cfg, const char* key, uint32_t index);
    /* "file:line:column" of the key, for error messages; "" if unknown. */
    const char* (*config_where)(const ft_config* cfg, const char* key);

    uint64_t (*seed)(void);
    void (*tensor_release)(ft_tensor t);

    /* Run services for objectives (LibTorch plugins only). `model` is one of
       FT_RUN_POLICY (the model being trained, with gradients), FT_RUN_REFERENCE (the
       frozen starting point: adapters off, a frozen copy, or log-probs precomputed
       before training; no gradients) or FT_RUN_TEACHER (the stage's teacher; no
       gradients). (ABI 1.0 called the argument `reference`: 0 and 1 keep their meaning.) */
    /* Per-token log-probability of each label under the model, [B, T] float32 (or the
       model's wider dtype), 0 where the label is ignored. New handle. */
    ft_status (*run_token_logprobs)(ft_run* run, const struct ft_batch* batch, int32_t model,
                                    ft_tensor* out, ft_error* err);
    /* Reports a named scalar (detached) for metrics.jsonl, averaged over the log window. */
    void (*run_metric)(ft_run* run, const char* name, double value);

    /* ---- ABI 1.1 ---- */
    /* Full logits at every labelled position: [N, V] float32 (or wider), N = the number of
       labels != -100 in row-major order; row n is the prediction for the label at t, made
       at the position the model's label_alignment names (t-1 for a decoder). New handle. */
    ft_status (*run_label_logits)(ft_run* run, const struct ft_batch* batch, int32_t model, ft_tensor* out,
                                  ft_error* err);

    /* ---- ABI 1.4 ---- */
    /* run_token_logprobs under softmax(logits / temperature) (temperature > 0): what
       on-policy objectives need at the sampling temperature, computed like
       run_token_logprobs in chunks against the LM head, never as [tokens x vocab]. */
    ft_status (*run_token_logprobs_at)(ft_run* run, const struct ft_batch* batch, int32_t model, double temperature,
                                       ft_tensor* out, ft_error* err);

    /* ---- ABI 1.6 ---- */
    /* The model's named outputs for `batch` (what its forward handed to
       ft_model_output.add_output: "pooled", "type_logits", ...), each visited once,
       borrowed for the duration of the visit; the policy's with gradients. A model
       without named outputs visits nothing. */
    ft_status (*run_model_outputs)(ft_run* run, const struct ft_batch* batch, int32_t model, ft_tensor_visitor visit,
                                   void* user, ft_error* err);

    /* ---- ABI 1.8 ---- */
    /* Nonzero while the host runs a model's create() for a model whose parameters it then
       replaces, every one, with a checkpoint's tensors: the model may make them on the meta
       device, with neither memory nor initialisation spent on values that are overwritten
       (fthost::ModelBase::parameter_options does). Zero at any other time. */
    int32_t (*loading_weights)(void);

    /* ---- ABI 1.9 ---- */
    /* While the host runs a model's or a parameterisation's create(): the device the model
       computes on ("cpu", "cuda:0"); NULL at any other time. Borrowed, valid during the
       call. A parameterisation that takes its base in host memory
       (ft_param_vtable.takes_base_on_host) puts what it keeps of it there. */
    const char* (*run_device)(void);
} ft_host_api;

#define FT_RUN_POLICY 0
#define FT_RUN_REFERENCE 1
#define FT_RUN_TEACHER 2

/* ---- batches ----------------------------------------------------------------------- */

typedef struct ft_named_tensor {
    const char* name;
    ft_tensor tensor; /* borrowed */
} ft_named_tensor;

/* One batch for every objective. The four named fields are borrowed, int64 [B, T] and
   always present; T counts a row's steps (tokens for a text model, events for an event
   model: see FT_INPUT_FIELDS). Sequence ids mark documents inside a packed row: a
   step belongs only with steps of the same id; padding has id -1. Position ids restart
   at 0 for each document. Labels are not shifted: which position predicts labels[b][t]
   is the model's ft_model_vtable.label_alignment (t-1 for a decoder, the default);
   -100 is ignored. */
typedef struct ft_batch {
    uint32_t struct_size;
    ft_tensor input_ids;
    ft_tensor labels;
    ft_tensor position_ids;
    ft_tensor sequence_ids;
    /* Label tokens over the whole effective batch (all accumulation micro-batches),
       so that a per-token mean over the effective batch is one division. */
    int64_t num_items_in_batch;
    /* Named extra inputs (borrowed): what a model's encode_row made of each row
       ("pixel_values", "amount", ...: the examples' tensors stacked along a new dim 0,
       each dim padded to the batch's longest), and, for the data shapes below,
       "completion_mask" (int64 [B, T], 1 on completion tokens and their EOS) and
       "desirable" (int64 [examples], FT_DATA_FEEDBACK's labels). */
    const ft_named_tensor* extras;
    uint32_t extra_count;
    /* ---- ABI 1.1 ---- */
    /* Examples over the whole effective batch (pairs for FT_DATA_PAIRS), so that a mean
       over examples of the effective batch is one division. */
    int64_t num_examples_in_batch;
} ft_batch;

/* ---- model plugins ------------------------------------------------------------------ */

/* A linear site: one adaptable projection y = x W^T + b inside the model. The model
   calls the installed forward for it, or the plain linear when none is installed. */
typedef ft_status (*ft_linear_forward_fn)(void* ctx, ft_tensor x, ft_tensor* y_out, ft_error* err);

typedef struct ft_linear_site {
    uint32_t struct_size;
    const char* name;    /* e.g. "model.layers.3.self_attn.q_proj" */
    int64_t in_features;
    int64_t out_features;
    ft_tensor weight;    /* borrowed, [out, in] */
    ft_tensor bias;      /* borrowed, or NULL */
} ft_linear_site;

/* Hands one named output to the host; `tensor` is a new handle the host takes. */
typedef void (*ft_output_fn)(void* user, const char* name, ft_tensor tensor);

/* Filled by forward / forward_cached; the caller allocates it and sets struct_size. */
typedef struct ft_model_output {
    uint32_t struct_size;
    ft_tensor hidden_states; /* new: final normalised hidden states [B, T, H], the LM head's input */
    /* ---- ABI 1.6 ---- */
    /* Set by the caller, or NULL when it wants hidden states only. A model with named
       outputs (pooled embeddings, per-field logits, ...) calls it once per output.
       ABI 1.8: a scalar named "auxiliary_loss" with gradients (a mixture of experts'
       load-balancing loss, already weighted) is added by the host to the training loss of
       the forward's micro-batch, averaged over the step's micro-batches. */
    ft_output_fn add_output;
    void* output_user;
} ft_model_output;

/* ---- model-owned inputs (ABI 1.6) ---- */

/* What a model reads (ft_model_vtable.inputs, flags; a table from before 1.6 reads as
   TEXT; a 1.6 table must set TEXT or FIELDS). */
#define FT_INPUT_TEXT 1u   /* the host tokenizes the row's text (TRL's fields) with the model's
                              tokenizer into input_ids and labels */
#define FT_INPUT_FIELDS 2u /* encode_row turns the row's own fields into named tensors; alone
                              (no FT_INPUT_TEXT) the model reads no text and has no tokenizer */
#define FT_INPUT_SOURCE 4u /* with FT_INPUT_TEXT, an encoder-decoder: a row's prompt is the
                              encoder's source, in the extras "source_ids" and "source_mask"
                              (int64 [B, S]; mask 1 on real tokens, 0 on padding); input_ids
                              are the decoder's: decoder_start_id, then the completion (+ EOS),
                              labelled as for a decoder (FT_LABEL_NEXT). A generation prompt
                              is the start id, with the source in the prefill's extras. */

/* Which hidden state predicts labels[b][t] (ft_model_vtable.label_alignment). */
#define FT_LABEL_NEXT 0 /* the state at t-1: a decoder predicting the next token (default) */
#define FT_LABEL_SAME 1 /* the state at t: the model aligned its labels itself (an event
                           model's per-step targets). An encoder-decoder's decoder rows
                           (FT_INPUT_SOURCE) are FT_LABEL_NEXT: they start with the start id. */

/* Where encode_row puts one example's tensors. Every callback copies what it needs;
   nothing passed in is kept. */
typedef struct ft_example_sink {
    uint32_t struct_size;
    void* user;
    /* One named tensor of the example (borrowed). A batch stacks the examples' tensors
       along a new dim 0, padding every dim to the batch's longest with pad_value. For a
       model without FT_INPUT_TEXT, "input_ids" and "labels" (int64 [steps]) become the
       batch's own fields (absent: zeros and -100). */
    void (*add)(void* user, const char* name, ft_tensor tensor, double pad_value);
    /* Without FT_INPUT_TEXT, required: the example's number of steps T (positions
       0..T-1, one document). Ignored with FT_INPUT_TEXT (T is the text's length). */
    void (*set_steps)(void* user, int64_t steps);
} ft_example_sink;

typedef struct ft_model_vtable {
    uint32_t struct_size;
    ft_status (*create)(const ft_host_api* host, const ft_config* cfg, ft_model** out, ft_error* err);
    void (*destroy)(ft_model* model);
    /* Every parameter tensor by its Hugging Face name (borrowed). */
    ft_status (*named_parameters)(ft_model* model, ft_tensor_visitor visit, void* user, ft_error* err);
    uint32_t (*linear_site_count)(ft_model* model);
    ft_status (*linear_site)(ft_model* model, uint32_t index, ft_linear_site* out, ft_error* err);
    /* fn = NULL restores the plain linear. */
    ft_status (*set_linear_forward)(ft_model* model, uint32_t index, ft_linear_forward_fn fn, void* ctx,
                                    ft_error* err);
    ft_status (*forward)(ft_model* model, const ft_batch* batch, ft_model_output* out, ft_error* err);
    /* Logits for (a chunk of) hidden states: [.., H] -> [.., V]. New handle. Kept apart
       from forward so the host can compute log-probs chunk by chunk. NULL (from ABI 1.6)
       for a model that predicts no labels over a vocabulary: objectives then use its
       named outputs, and asking for label log-probs is an error. */
    ft_status (*lm_head)(ft_model* model, ft_tensor hidden, ft_tensor* logits_out, ft_error* err);
    void (*set_training)(ft_model* model, int32_t training);
    /* The LM head's output size; NULL together with lm_head. */
    int64_t (*vocab_size)(ft_model* model);

    /* ---- ABI 1.1: incremental decoding (all three NULL: not supported, and the host
       recomputes the whole prefix for every new token) ---- */
    ft_status (*cache_create)(ft_model* model, ft_kv_cache** out, ft_error* err);
    void (*cache_destroy)(ft_model* model, ft_kv_cache* cache);
    /* Appends the batch's tokens ([B, t], with their position ids; sequence id -1 marks
       padding, which no token attends to) to the cache's rows and returns their final
       hidden states [B, t, H]. Each token attends to the valid tokens before it in its
       row: those already in the cache and the earlier ones of this call. */
    ft_status (*forward_cached)(ft_model* model, ft_kv_cache* cache, const ft_batch* batch, ft_model_output* out,
                                ft_error* err);

    /* ---- ABI 1.3: Hugging Face checkpoints (both NULL: this model reads none) ---- */
    /* The config.json "architectures" names this model implements, NULL-terminated. */
    const char* const* hf_architectures;
    /* Translates a checkpoint's config.json (UTF-8 JSON text) into this plugin's options,
       written through `write` (called once) as one JSON object {option: value}. A setting
       the model cannot honour is an error naming its config.json key. The host then
       creates the model with those options and loads the checkpoint's tensors by name, so
       named_parameters must use the checkpoint's tensor names. */
    ft_status (*options_from_hf_config)(const char* config_json, void (*write)(void* user, const char* json),
                                        void* user, ft_error* err);

    /* ---- ABI 1.4: activation checkpointing (NULL: not supported) ---- */
    /* While on, forward passes with gradients keep only each block's input and recompute
       the block in backward ([stage.train] activation_checkpointing). */
    void (*set_activation_checkpointing)(ft_model* model, int32_t on);

    /* ---- ABI 1.5: a cache of fixed size (NULL: the host never replays decode steps) ---- */
    /* Sizes `cache` for at most `tokens` tokens per row before its first forward_cached;
       the host never feeds more. A model that offers this promises that, on a reserved
       cache, a forward_cached over [B, 1] inputs runs the same device work on the same
       memory every step — no host synchronisation, no allocation or host value that
       depends on the step — reading its write position from the cache's own device
       state, so that a host may capture one decode step in a CUDA graph and replay it
       for the next tokens. */
    ft_status (*cache_reserve)(ft_model* model, ft_kv_cache* cache, int64_t tokens, ft_error* err);

    /* ---- ABI 1.6: model-owned inputs and label alignment ---- */
    uint32_t inputs;         /* FT_INPUT_* flags */
    int32_t label_alignment; /* FT_LABEL_NEXT or FT_LABEL_SAME */
    /* Required with FT_INPUT_FIELDS, else NULL. Turns one dataset row (a UTF-8 JSON
       object) into the example's tensors through `sink`. `label_policy` is the
       objective's (FT_LABELS_ALL / FT_LABELS_COMPLETION); at most `max_steps` steps. A
       row it cannot use is an error naming the field: the host adds file and line. */
    ft_status (*encode_row)(ft_model* model, const char* row_json, ft_label_policy label_policy, int64_t max_steps,
                            const ft_example_sink* sink, ft_error* err);
    /* Optional (NULL: every sample of a prompt is prefilled on its own). Puts the cache's
       rows in a new order after a prefill: row i becomes old row rows[i] (borrowed int64
       [B'] on the cache's device; repeats allowed), self- and cross-attention state alike,
       so that one prefill of a prompt — its encoder pass, its image — serves all the
       continuations sampled from it. */
    ft_status (*cache_select_rows)(ft_model* model, ft_kv_cache* cache, ft_tensor rows, ft_error* err);
    /* Required with FT_INPUT_SOURCE, else NULL: the token the decoder starts from (T5: its
       config.json decoder_start_token_id, the pad id). */
    int64_t (*decoder_start_id)(ft_model* model);

    /* ---- ABI 1.7: what a checkpoint's config.json does not say (all optional) ---- */
    /* As options_from_hf_config, also given the names of the tensors the checkpoint holds
       (`tensor_names`: a UTF-8 JSON array of strings), for a layout only the tensors tell
       (T5: whether lm_head.weight is stored or the head is shared.weight). When set, the
       host calls it instead of options_from_hf_config, which may then be NULL. */
    ft_status (*options_from_hf_checkpoint)(const char* config_json, const char* tensor_names,
                                            void (*write)(void* user, const char* json), void* user, ft_error* err);
    /* NULL-terminated, static (borrowed for the plugin's lifetime). Tensors a checkpoint may
       hold that are not among named_parameters: "name" — one the model does not use (T5's
       stale decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight), kept
       as read and written back on save; "name=parameter" — another name for one of the
       model's parameters (T5's encoder.embed_tokens.weight=shared.weight): not loaded
       (the parameter is), written on save from the parameter's current value. Either is
       written back only when the checkpoint had it; any other unknown tensor is an error. */
    const char* const* hf_extra_tensors;
    /* NULL-terminated, static. The linear sites an adapter targets when its configuration
       names none (PEFT's defaults for the architecture: T5 {"q", "v"}); NULL: the
       adapter's own default. Matched as target_modules are (name or dotted suffix). */
    const char* const* default_adapter_targets;

    /* ---- ABI 1.8: weights in the dtype a checkpoint stores ---- */
    /* 1: the model computes with parameters of whatever floating dtype a checkpoint stores
       them in (bf16, fp16, fp32), casting where dtypes meet (<fthost/torch.hpp>'s
       ops::linear and ops::rms_norm do), so the host loads a checkpoint's tensors as
       stored: a frozen base costs its stored size, and a parameterisation that trains
       weights (full) gives them the precision it needs. 0: the host converts every loaded
       tensor to the dtype create() gave its parameter. */
    int32_t keeps_stored_dtypes;
} ft_model_vtable;

/* ---- parameterisation plugins ------------------------------------------------------- */

typedef struct ft_param_vtable {
    uint32_t struct_size;
    /* Applies itself to `model`: freezes or unfreezes base weights and installs
       forwards on the linear sites it targets. */
    ft_status (*create)(const ft_host_api* host, const ft_config* cfg, const ft_model_vtable* model_vt,
                        ft_model* model, ft_param** out, ft_error* err);
    void (*destroy)(ft_param* param);
    /* The tensors the optimizer updates, with stable names (these are what an adapter
       checkpoint holds). */
    ft_status (*trainable_parameters)(ft_param* param, ft_tensor_visitor visit, void* user, ft_error* err);
    /* 1 if trainable_parameters are the whole model (full fine-tuning), 0 for adapters. */
    int32_t (*is_full)(ft_param* param);
    /* enabled = 0 computes as the base model (the reference for preference stages). */
    ft_status (*set_enabled)(ft_param* param, int32_t enabled, ft_error* err);
    void (*set_training)(ft_param* param, int32_t training);
    /* Folds the adapter into the base weights and uninstalls its forwards. */
    ft_status (*merge)(ft_param* param, ft_error* err);
    /* ---- ABI 1.2 ---- */
    /* Optional (NULL: the adapter has no PEFT form). Writes the adapter's configuration as
       the JSON object of PEFT's adapter_config.json through `write` (called once, UTF-8);
       the host sets base_model_name_or_path and saves it beside adapter_model.safetensors
       (trainable_parameters, which must then carry PEFT's tensor names). */
    ft_status (*peft_config)(ft_param* param, void (*write)(void* user, const char* json), void* user, ft_error* err);

    /* ---- ABI 1.9 ---- */
    /* Optional (0: no). Nonzero: when the host loads a checkpoint for a stage with this
       parameterisation on an accelerator, it leaves the linear sites' weights in host
       memory (memory-mapped where the file allows) and puts every other tensor on the
       device; create() takes each site's weight to ft_host_api.run_device in the form it
       keeps — qlora quantises one weight at a time, so the device never holds the
       full-precision base. Whatever is still in host memory after create() the host
       moves to the device. */
    int32_t takes_base_on_host;
} ft_param_vtable;

/* ---- objective plugins -------------------------------------------------------------- */

/* The rows an objective trains on, and how the host lays them out in a batch. */
typedef int32_t ft_data_shape;
/* One sequence per row (text, prompt/completion, messages); rows may be packed. */
#define FT_DATA_SEQUENCES 0
/* prompt/chosen/rejected rows. A batch of B pairs has 2B rows: rows [0, B) are the
   chosen sequences, rows [B, 2B) the rejected ones in the same order. Never packed. */
#define FT_DATA_PAIRS 1
/* prompt/completion/label rows (binary feedback, KTO). A batch of B examples has 2B
   rows: rows [0, B) are the examples, row B + i is example i's prompt followed by the
   completion of example i-1 (of example B-1 for i = 0): the mismatched pairs for a KL
   estimate. extras "desirable" holds the B labels (1 desirable, 0 undesirable). */
#define FT_DATA_FEEDBACK 2
/* prompt rows for on-policy RL (GRPO). The host samples num_generations completions per
   prompt with the policy, grades each with the stage's graders, and hands the objective
   the rows prompt + completion (labels on the completion; a truncated completion has
   none when [stage.generation] mask_truncated_completions is set). One optimizer step
   trains on one generation batch, split into the accumulation micro-batches. Extras:
   "rewards" (float64 [N]: the weighted sum of grader scores of every completion of the
   generation batch, NaN-scores counting 0, as TRL's nansum), "row_index" (int64 [B]: each
   row's index in it; rows of one prompt are consecutive), "num_generations",
   "max_new_tokens" (int64 [1]), "sampling_temperature" (float64 [1]), and, when a
   generation batch serves several steps, "old_logprobs" (float32 [B, T], temperature-
   scaled per-token log-probs at sampling time). */
#define FT_DATA_COMPLETIONS 3

/* What an objective needs besides the policy (flags). */
#define FT_NEEDS_REFERENCE 1u /* FT_RUN_REFERENCE log-probs */
#define FT_NEEDS_TEACHER 2u   /* FT_RUN_TEACHER: the stage must name a teacher */

/* What the host knows about a stage's training data before the first step. */
typedef struct ft_dataset_info {
    uint32_t struct_size;
    int64_t num_examples;
    int64_t num_desirable;   /* FT_DATA_FEEDBACK: label true */
    int64_t num_undesirable; /* FT_DATA_FEEDBACK: label false */
} ft_dataset_info;

typedef struct ft_objective_vtable {
    uint32_t struct_size;
    ft_label_policy label_policy;
    ft_status (*create)(const ft_host_api* host, const ft_config* cfg, ft_objective** out, ft_error* err);
    void (*destroy)(ft_objective* objective);
    /* Scalar loss for one micro-batch (new handle), already scaled so that summing over
       the accumulation micro-batches gives the effective batch's loss. */
    ft_status (*loss)(ft_objective* objective, ft_run* run, const ft_batch* batch, ft_tensor* loss_out,
                      ft_error* err);
    /* ---- ABI 1.1 (a 1.0 table reads as FT_DATA_SEQUENCES, needs 0, no on_dataset) ---- */
    ft_data_shape data_shape;
    uint32_t needs; /* FT_NEEDS_* */
    /* Optional: called once with the training data's statistics before training (KTO
       warns about an unbalanced desirable/undesirable weighting here). */
    ft_status (*on_dataset)(ft_objective* objective, const ft_dataset_info* info, ft_error* err);
} ft_objective_vtable;

/* ---- grader plugins (pure C, no LibTorch) ------------------------------------------- */

typedef struct ft_grade_item {
    uint32_t struct_size;
    const char* prompt;
    const char* completion; /* what the model produced */
    const char* reference;  /* the dataset's expected answer, or NULL */
    const char* row_json;   /* the whole dataset row as JSON (see FT_PLUGIN_COMBINES_GRADERS) */
} ft_grade_item;

typedef struct ft_grade_result {
    uint32_t struct_size;
    double score;          /* in [0, 1]; NaN = not applicable (skipped) */
    char reason[128];      /* optional, NUL-terminated */
} ft_grade_result;

typedef struct ft_grader_vtable {
    uint32_t struct_size;
    ft_status (*create)(const ft_host_api* host, const ft_config* cfg, ft_grader** out, ft_error* err);
    void (*destroy)(ft_grader* grader);
    /* Scores every item. A status other than FT_OK means the batch could not be graded
       (a grading program crashed or timed out, an external service failed): no result is
       read, and the host applies the grader's on_error (skip / zero / fail) to all of its
       items and counts the failure, with err's message as the reason. Never return FT_OK
       with made-up scores for a failure: a 0 would train as a real reward. */
    ft_status (*grade)(ft_grader* grader, const ft_grade_item* items, uint32_t count, ft_grade_result* results,
                       ft_error* err);
} ft_grader_vtable;

/* ---- descriptors and the entry point ----------------------------------------------- */

#define FT_PLUGIN_THREAD_SAFE 1u /* callbacks may be called from several threads at once */
/* A grader whose config holds sub-graders as tables `graders.<name>` (ABI 1.1): the host
   runs those first, and the combining grader's row_json is then
   {"row": <the dataset row>, "scores": {"<name>": score or null, ...}}. They do not nest.
   (ft_grade_item is an array element, so it does not grow: sub-scores travel as JSON.) */
#define FT_PLUGIN_COMBINES_GRADERS 2u

typedef struct ft_plugin_desc {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;
    ft_kind kind;
    uint32_t flags;
    const char* name;
    const char* version;
    const char* description;
    /* "MAJOR.MINOR" of the LibTorch the plugin was built with, or NULL if it does not
       use LibTorch (graders). */
    const char* torch_version;
    const ft_option* options;
    uint32_t option_count;
    /* ft_model_vtable / ft_param_vtable / ft_objective_vtable / ft_grader_vtable by kind. */
    const void* vtable;
    /* Optional (NULL: nothing to check). Checks a config section's values beyond their
       declared types — ranges, combinations — so that `fthost validate` reports them,
       with the key's location from host->config_where, before anything runs. */
    ft_status (*validate)(const ft_host_api* host, const ft_config* cfg, ft_error* err);
} ft_plugin_desc;

/* The one exported function of a plugin library. */
typedef const ft_plugin_desc* const* (*ft_entry_fn)(uint32_t* count);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FTHOST_FTHOST_H */
