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

size_t current_vtable_size(ft_kind kind) {
    switch (kind) {
        case FT_KIND_MODEL: return sizeof(ft_model_vtable);
        case FT_KIND_PARAM: return sizeof(ft_param_vtable);
        case FT_KIND_OBJECTIVE: return sizeof(ft_objective_vtable);
        case FT_KIND_GRADER: return sizeof(ft_grader_vtable);
    }
    return 0;
}

TEST(AbiLayout, PluginsDeclareTheirTableSizes) {
    for (const auto* p : registry().all()) {
        EXPECT_EQ(p->desc->struct_size, sizeof(ft_plugin_desc)) << p->desc->name;
        EXPECT_EQ(*static_cast<const uint32_t*>(p->desc->vtable), current_vtable_size(p->desc->kind)) << p->desc->name;
        EXPECT_LE(min_vtable_size(p->desc->kind), current_vtable_size(p->desc->kind));
        EXPECT_EQ(p->desc->abi_major, FTHOST_ABI_MAJOR);
        EXPECT_EQ(p->desc->abi_minor, FTHOST_ABI_MINOR);
    }
    EXPECT_EQ(fthost::host::host_api()->struct_size, sizeof(ft_host_api));
}

// An objective built against ABI 1.0 has a 32-byte table: the host must not read the
// 1.1 fields past it, and gives them their 1.0 meaning.
TEST(AbiLayout, ObjectiveTableFromAbi10ReadsAsSequences) {
    ft_objective_vtable vt{};
    vt.data_shape = FT_DATA_PAIRS;  // beyond struct_size: must be ignored
    vt.needs = FT_NEEDS_REFERENCE;
    vt.struct_size = offsetof(ft_objective_vtable, data_shape);
    EXPECT_EQ(min_vtable_size(FT_KIND_OBJECTIVE), vt.struct_size);
    ObjectiveTraits t = objective_traits(&vt);
    EXPECT_EQ(t.data_shape, FT_DATA_SEQUENCES);
    EXPECT_EQ(t.needs, 0u);
    EXPECT_EQ(t.on_dataset, nullptr);
    vt.struct_size = sizeof(ft_objective_vtable);
    t = objective_traits(&vt);
    EXPECT_EQ(t.data_shape, FT_DATA_PAIRS);
    EXPECT_EQ(t.needs, FT_NEEDS_REFERENCE);
}

// A model table from before ABI 1.6 (144 bytes) reads text and predicts labels from the
// previous position, whatever lies past its end; a 1.6 table is read as declared.
TEST(AbiLayout, ModelTableFromAbi15ReadsAsATextDecoder) {
    ft_model_vtable vt{};
    vt.inputs = FT_INPUT_FIELDS;  // beyond struct_size: must be ignored
    vt.label_alignment = FT_LABEL_SAME;
    vt.struct_size = offsetof(ft_model_vtable, inputs);
    ModelTraits t = model_traits(&vt);
    EXPECT_EQ(t.inputs, FT_INPUT_TEXT);
    EXPECT_EQ(t.label_alignment, FT_LABEL_NEXT);
    EXPECT_EQ(t.encode_row, nullptr);
    EXPECT_FALSE(FT_HAS_FIELD(&vt, ft_model_vtable, inputs));
    vt.struct_size = sizeof(ft_model_vtable);
    t = model_traits(&vt);
    EXPECT_EQ(t.inputs, FT_INPUT_FIELDS);
    EXPECT_EQ(t.label_alignment, FT_LABEL_SAME);
    EXPECT_TRUE(FT_HAS_FIELD(&vt, ft_model_vtable, encode_row));
}

}  // namespace
}  // namespace fthost::test
