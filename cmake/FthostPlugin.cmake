# fthost_add_plugin(NAME SOURCES... [NO_TORCH])
# Builds one plugin library into the build's plugin folder, with hidden visibility so
# that only the entry symbol is exported; installed into lib/fthost/plugins, beside the
# installed executable.
function(fthost_add_plugin name)
  cmake_parse_arguments(ARG "NO_TORCH" "" "SOURCES" ${ARGN})
  add_library(${name} MODULE ${ARG_SOURCES})
  set_target_properties(${name} PROPERTIES
    PREFIX "lib"
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY ${FTHOST_PLUGIN_DIR})
  target_link_libraries(${name} PRIVATE fthost::sdk)
  target_link_options(${name} PRIVATE "-Wl,--version-script=${CMAKE_SOURCE_DIR}/cmake/plugin.map")
  if(NOT ARG_NO_TORCH)
    target_link_libraries(${name} PRIVATE fthost::torch)
  endif()
  install(TARGETS ${name} LIBRARY DESTINATION lib/fthost/plugins)
endfunction()
