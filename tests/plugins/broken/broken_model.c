/* Model tables whose ABI 1.6 fields contradict each other, each refused by the host at
 * load with the reason (registry_test.cpp). Never created: every entry is a stub the
 * host must not reach. Build with one BREAK_* macro and TORCH_MM = the host's LibTorch. */
#include <fthost/fthost.h>

#include <stddef.h>

static ft_status m_create(const ft_host_api* h, const ft_config* c, ft_model** out, ft_error* e) {
    (void)h, (void)c, (void)out, (void)e;
    return FT_ERR_UNSUPPORTED;
}
static void m_destroy(ft_model* m) { (void)m; }
static ft_status m_params(ft_model* m, ft_tensor_visitor v, void* u, ft_error* e) {
    (void)m, (void)v, (void)u, (void)e;
    return FT_OK;
}
static uint32_t m_sites(ft_model* m) { (void)m; return 0; }
static ft_status m_site(ft_model* m, uint32_t i, ft_linear_site* s, ft_error* e) {
    (void)m, (void)i, (void)s, (void)e;
    return FT_ERR_UNSUPPORTED;
}
static ft_status m_set(ft_model* m, uint32_t i, ft_linear_forward_fn f, void* c, ft_error* e) {
    (void)m, (void)i, (void)f, (void)c, (void)e;
    return FT_ERR_UNSUPPORTED;
}
static ft_status m_forward(ft_model* m, const ft_batch* b, ft_model_output* o, ft_error* e) {
    (void)m, (void)b, (void)o, (void)e;
    return FT_ERR_UNSUPPORTED;
}
static ft_status m_head(ft_model* m, ft_tensor h, ft_tensor* o, ft_error* e) {
    (void)m, (void)h, (void)o, (void)e;
    return FT_ERR_UNSUPPORTED;
}
static void m_train(ft_model* m, int32_t t) { (void)m, (void)t; }

static ft_model_vtable make_table(void) {
    ft_model_vtable vt = {0};
    vt.struct_size = sizeof(ft_model_vtable);
    vt.create = m_create;
    vt.destroy = m_destroy;
    vt.named_parameters = m_params;
    vt.linear_site_count = m_sites;
    vt.linear_site = m_site;
    vt.set_linear_forward = m_set;
    vt.forward = m_forward;
    vt.lm_head = m_head;
    vt.set_training = m_train;
    vt.inputs = FT_INPUT_FIELDS;
    vt.label_alignment = FT_LABEL_SAME;
#if defined(BREAK_HEAD_WITHOUT_VOCAB)
    vt.encode_row = NULL; /* and no vocab_size: two contradictions, the first is reported */
    vt.inputs = FT_INPUT_TEXT;
#elif defined(BREAK_FIELDS_WITHOUT_ENCODE)
    vt.encode_row = NULL;
#endif
    return vt;
}

static ft_model_vtable kVtable;
static const ft_plugin_desc kDesc = {
    sizeof(ft_plugin_desc), FTHOST_ABI_MAJOR, FTHOST_ABI_MINOR, FT_KIND_MODEL, 0, PLUGIN_NAME, "0.0.1",
    "a model table built to be refused", TORCH_MM, NULL, 0, &kVtable, NULL};

FTHOST_EXPORT const ft_plugin_desc* const* fthost_plugins_v1(uint32_t* count) {
    static const ft_plugin_desc* const list[] = {&kDesc};
    kVtable = make_table();
    *count = 1;
    return list;
}
