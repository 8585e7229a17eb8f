/* The plugin fuzz_plugin_desc loads through the registry: its entry symbol returns the
   descriptor list the fuzz target last set with fthost_fuzz_set_descriptors (looked up
   with dlsym), so the registry's checks run on the real loading path. */
#include <fthost/fthost.h>

static const ft_plugin_desc* const* g_list = 0;
static uint32_t g_count = 0;

__attribute__((visibility("default"))) void fthost_fuzz_set_descriptors(const ft_plugin_desc* const* list,
                                                                         uint32_t count) {
    g_list = list;
    g_count = count;
}

__attribute__((visibility("default"))) const ft_plugin_desc* const* fthost_plugins_v1(uint32_t* count) {
    *count = g_count;
    return g_list;
}
