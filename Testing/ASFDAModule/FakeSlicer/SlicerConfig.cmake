# A stand-in for a Slicer build tree, so the extension's CMake files can be configured for real without one.
# It defines what the extension uses (Slicer_USE_FILE, the scripted-module macros, the extension config and
# packaging includes) and checks each call's arguments the way Slicer would need them; it builds nothing.
# The manifest it writes (asfda-manifest.txt in the build folder) lets the Python test compare the listed
# files with the files on disk.
set(Slicer_FOUND TRUE)
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/GenerateExtensionConfig.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/ExtensionCPack.cmake)
