# fthost_sdk_add_plugin(NAME SOURCES... [TORCH])
# Builds a plugin library for fthost out of tree. TORCH links LibTorch (find_package(Torch)
# first, with the same major.minor as the fthost you load it into); graders need none.
set(_FTHOST_SDK_DIR "${CMAKE_CURRENT_LIST_DIR}")
function(fthost_sdk_add_plugin name)
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES" ${ARGN})
  add_library(${name} MODULE ${ARG_SOURCES})
  set_target_properties(${name} PROPERTIES
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_link_libraries(${name} PRIVATE fthost::sdk)
  target_link_options(${name} PRIVATE "-Wl,--version-script=${_FTHOST_SDK_DIR}/plugin.map")
  if(ARG_TORCH)
    target_link_libraries(${name} PRIVATE ${TORCH_LIBRARIES})
  endif()
endfunction()
