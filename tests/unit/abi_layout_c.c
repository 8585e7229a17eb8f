/* The ABI header compiles as C (a grader needs nothing else), and its layout is fixed:
 * these checks fail the build if a field moves. Offsets are for LP64 (x86-64, aarch64). */
#include <fthost/fthost.h>

#include <stddef.h>

#define FT_CHECK(cond) _Static_assert(cond, #cond)

FT_CHECK(sizeof(ft_error) == FT_ERROR_MESSAGE_SIZE);
FT_CHECK(offsetof(ft_option, name) == 8 && offsetof(ft_option, type) == 16 && offsetof(ft_option, default_value) == 24);
FT_CHECK(sizeof(ft_option) == 40);
FT_CHECK(offsetof(ft_plugin_desc, abi_major) == 4 && offsetof(ft_plugin_desc, abi_minor) == 6);
FT_CHECK(offsetof(ft_plugin_desc, kind) == 8 && offsetof(ft_plugin_desc, flags) == 12);
FT_CHECK(offsetof(ft_plugin_desc, name) == 16 && offsetof(ft_plugin_desc, version) == 24);
FT_CHECK(offsetof(ft_plugin_desc, description) == 32 && offsetof(ft_plugin_desc, torch_version) == 40);
FT_CHECK(offsetof(ft_plugin_desc, options) == 48 && offsetof(ft_plugin_desc, option_count) == 56);
FT_CHECK(offsetof(ft_plugin_desc, vtable) == 64 && offsetof(ft_plugin_desc, validate) == 72);
FT_CHECK(sizeof(ft_plugin_desc) == 80);
FT_CHECK(offsetof(ft_host_api, log) == 8 && offsetof(ft_host_api, config_has) == 16);
FT_CHECK(offsetof(ft_host_api, config_where) == 72 && offsetof(ft_host_api, seed) == 80);
FT_CHECK(offsetof(ft_host_api, tensor_release) == 88 && offsetof(ft_host_api, run_token_logprobs) == 96);
FT_CHECK(offsetof(ft_host_api, run_metric) == 104 && offsetof(ft_host_api, run_label_logits) == 112);
FT_CHECK(offsetof(ft_host_api, run_token_logprobs_at) == 120 && offsetof(ft_host_api, run_model_outputs) == 128);
FT_CHECK(offsetof(ft_host_api, loading_weights) == 136 && offsetof(ft_host_api, run_device) == 144);
FT_CHECK(sizeof(ft_host_api) == 152);
FT_CHECK(offsetof(ft_batch, input_ids) == 8 && offsetof(ft_batch, sequence_ids) == 32);
FT_CHECK(offsetof(ft_batch, num_items_in_batch) == 40 && offsetof(ft_batch, extras) == 48);
FT_CHECK(offsetof(ft_batch, extra_count) == 56 && offsetof(ft_batch, num_examples_in_batch) == 64);
FT_CHECK(sizeof(ft_batch) == 72);
FT_CHECK(offsetof(ft_named_tensor, tensor) == 8 && sizeof(ft_named_tensor) == 16);
FT_CHECK(offsetof(ft_model_output, hidden_states) == 8 && offsetof(ft_model_output, add_output) == 16);
FT_CHECK(offsetof(ft_model_output, output_user) == 24 && sizeof(ft_model_output) == 32);
FT_CHECK(offsetof(ft_example_sink, user) == 8 && offsetof(ft_example_sink, add) == 16);
FT_CHECK(offsetof(ft_example_sink, set_steps) == 24 && sizeof(ft_example_sink) == 32);
FT_CHECK(offsetof(ft_linear_site, name) == 8 && offsetof(ft_linear_site, weight) == 32 && sizeof(ft_linear_site) == 48);
FT_CHECK(offsetof(ft_model_vtable, create) == 8 && offsetof(ft_model_vtable, forward) == 56);
FT_CHECK(offsetof(ft_model_vtable, lm_head) == 64 && offsetof(ft_model_vtable, vocab_size) == 80);
FT_CHECK(offsetof(ft_model_vtable, cache_create) == 88 && offsetof(ft_model_vtable, forward_cached) == 104);
FT_CHECK(offsetof(ft_model_vtable, hf_architectures) == 112 && offsetof(ft_model_vtable, options_from_hf_config) == 120);
FT_CHECK(offsetof(ft_model_vtable, set_activation_checkpointing) == 128 && offsetof(ft_model_vtable, cache_reserve) == 136);
FT_CHECK(offsetof(ft_model_vtable, inputs) == 144 && offsetof(ft_model_vtable, label_alignment) == 148);
FT_CHECK(offsetof(ft_model_vtable, encode_row) == 152 && offsetof(ft_model_vtable, cache_select_rows) == 160);
FT_CHECK(offsetof(ft_model_vtable, decoder_start_id) == 168);
FT_CHECK(offsetof(ft_model_vtable, options_from_hf_checkpoint) == 176 &&
         offsetof(ft_model_vtable, hf_extra_tensors) == 184 &&
         offsetof(ft_model_vtable, default_adapter_targets) == 192);
FT_CHECK(offsetof(ft_model_vtable, keeps_stored_dtypes) == 200 && sizeof(ft_model_vtable) == 208);
FT_CHECK(offsetof(ft_param_vtable, create) == 8 && offsetof(ft_param_vtable, merge) == 56 &&
         offsetof(ft_param_vtable, peft_config) == 64 && offsetof(ft_param_vtable, takes_base_on_host) == 72 &&
         sizeof(ft_param_vtable) == 80);
FT_CHECK(offsetof(ft_objective_vtable, label_policy) == 4 && offsetof(ft_objective_vtable, create) == 8);
FT_CHECK(offsetof(ft_objective_vtable, loss) == 24 && offsetof(ft_objective_vtable, data_shape) == 32);
FT_CHECK(offsetof(ft_objective_vtable, needs) == 36 && offsetof(ft_objective_vtable, on_dataset) == 40);
FT_CHECK(sizeof(ft_objective_vtable) == 48 && sizeof(ft_dataset_info) == 32);
FT_CHECK(offsetof(ft_grade_item, prompt) == 8 && offsetof(ft_grade_item, row_json) == 32 && sizeof(ft_grade_item) == 40);
FT_CHECK(offsetof(ft_grade_result, score) == 8 && offsetof(ft_grade_result, reason) == 16);
FT_CHECK(sizeof(ft_grade_result) == 144);
FT_CHECK(offsetof(ft_grader_vtable, grade) == 24 && sizeof(ft_grader_vtable) == 32);

/* Sizes as seen from C, compared with the C++ view at run time (abi_layout_test.cpp). */
size_t ft_test_c_sizeof(int which) {
    switch (which) {
        case 0: return sizeof(ft_plugin_desc);
        case 1: return sizeof(ft_host_api);
        case 2: return sizeof(ft_batch);
        case 3: return sizeof(ft_model_vtable);
        case 4: return sizeof(ft_param_vtable);
        case 5: return sizeof(ft_objective_vtable);
        case 6: return sizeof(ft_grader_vtable);
        default: return 0;
    }
}
