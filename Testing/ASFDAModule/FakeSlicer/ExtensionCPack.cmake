# Packaging needs a Slicer build tree; the stand-in only records that the extension asked for it.
file(APPEND ${ASFDA_MANIFEST} "cpack ${PROJECT_NAME}\n")
