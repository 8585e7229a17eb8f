// The ABI's structs have the same layout from C and from C++ (static checks of every
// offset are in abi_layout_c.c and fail the build), and the C++ layer fills the tables
// with their true sizes.
#include "test_support.hpp"

extern "C" size_t ft_test_c_sizeof(int which);

namespace fthost::test {
namespace {

TEST(AbiLayout, CAndCxxAgreeOnEveryStruct) {
    EXPECT_EQ(ft_test_c_sizeof(0), sizeof(ft_plugin_desc));
    EXPECT_EQ(ft_test_c_sizeof(1), sizeof(ft_host_api));
    EXPECT_EQ(ft_test_c_sizeof(2), sizeof(ft_batch));
    EXPECT_EQ(ft_test_c_sizeof(3), sizeof(ft_model_vtable));
    EXPECT_EQ(ft_test_c_sizeof(4), sizeof(ft_param_vtable));
    EXPECT_EQ(ft_test_c_sizeof(5), sizeof(ft_objective_vtable));
    EXPECT_EQ(ft_test_c_sizeof(6), sizeof(ft_grader_vtable));
}

TEST(AbiLayout, PluginsDeclareTheirTableSizes) {
    for (const auto* p : registry().all()) {
        EXPECT_EQ(p->desc->struct_size, sizeof(ft_plugin_desc)) << p->desc->name;
        EXPECT_EQ(*static_cast<const uint32_t*>(p->desc->vtable), min_vtable_size(p->desc->kind)) << p->desc->name;
        EXPECT_EQ(p->desc->abi_major, FTHOST_ABI_MAJOR);
    }
    EXPECT_EQ(fthost::host::host_api()->struct_size, sizeof(ft_host_api));
}

}  // namespace
}  // namespace fthost::test
