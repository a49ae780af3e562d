# Slicer's extension config needs the EXTENSION_* metadata; the catalog reads it from the build.
foreach(var IN ITEMS EXTENSION_HOMEPAGE EXTENSION_CATEGORY EXTENSION_CONTRIBUTORS EXTENSION_DESCRIPTION
                     EXTENSION_ICONURL EXTENSION_DEPENDS)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "${var} is not set in the extension's top-level CMakeLists.txt")
  endif()
  file(APPEND ${ASFDA_MANIFEST} "metadata ${var}=${${var}}\n")
endforeach()
if(NOT DEFINED EXTENSION_SCREENSHOTURLS)
  message(FATAL_ERROR "EXTENSION_SCREENSHOTURLS is not set (an empty string is allowed)")
endif()
