/* One source, several deliberately broken plugins: each build defines one BREAK_* macro
 * and gets a library the host must refuse with a precise reason (registry_test.cpp).
 * GOOD builds a valid grader, proving the host goes on loading after a refusal. */
#include <fthost/fthost.h>

#include <string.h>

static ft_status b_create(const ft_host_api* h, const ft_config* c, ft_grader** out, ft_error* e) {
    (void)h, (void)c, (void)e;
    *out = (ft_grader*)1;
    return FT_OK;
}
static void b_destroy(ft_grader* g) { (void)g; }
static ft_status b_grade(ft_grader* g, const ft_grade_item* items, uint32_t n, ft_grade_result* r, ft_error* e) {
    (void)g, (void)items, (void)e;
    for (uint32_t i = 0; i < n; ++i) r[i].score = 1.0;
    return FT_OK;
}

#ifdef BREAK_VTABLE_SIZE
static const ft_grader_vtable kVtable = {sizeof(ft_grader_vtable) - 8, b_create, b_destroy, b_grade};
#else
static const ft_grader_vtable kVtable = {sizeof(ft_grader_vtable), b_create, b_destroy, b_grade};
#endif

#ifndef PLUGIN_NAME
#define PLUGIN_NAME "good_grader"
#endif

static const ft_plugin_desc kDesc = {
#ifdef BREAK_STRUCT_SIZE
    sizeof(ft_plugin_desc) - 16,
#else
    sizeof(ft_plugin_desc),
#endif
#ifdef BREAK_ABI_MAJOR
    FTHOST_ABI_MAJOR + 1,
#else
    FTHOST_ABI_MAJOR,
#endif
    FTHOST_ABI_MINOR,
#ifdef BREAK_TORCH_VERSION
    FT_KIND_MODEL,
#else
    FT_KIND_GRADER,
#endif
    0, PLUGIN_NAME, "0.0.1", "a plugin built to be refused",
#ifdef BREAK_TORCH_VERSION
    "1.0", /* a model built against another LibTorch */
#else
    NULL,
#endif
    NULL, 0, &kVtable, NULL};

#ifndef BREAK_NO_ENTRY
FTHOST_EXPORT const ft_plugin_desc* const* fthost_plugins_v1(uint32_t* count) {
    static const ft_plugin_desc* const list[] = {&kDesc};
    *count = 1;
    return list;
}
#else
FTHOST_EXPORT int some_other_symbol(void) { return (int)strlen(kDesc.name); }
#endif
