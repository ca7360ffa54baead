// retikd/data/stb_image.hpp — how a header-only library uses stb_image (Debian's libstb-dev) without asking
// its users for a link flag or a "define the implementation in exactly one file" ritual.
//
// Default: every translation unit that includes the retikd data headers compiles its own private copy of
// stb_image's JPEG and PNG decoders (STB_IMAGE_STATIC: internal linkage, so any number of translation units
// link together; STBI_NO_STDIO: retikd reads files itself). The cost is ~0.1 MB of code per translation unit
// that decodes images, which is a handful in any program.
//
// RETIKD_STB_IMAGE_EXTERNAL (define it for the whole program): retikd only includes the declarations and the
// program provides the implementation — link Debian's libstb (`-lstb`, /usr/lib/<arch>/libstb.so) or define
// STB_IMAGE_IMPLEMENTATION in one file of your own. Use this when your own code also includes
// <stb/stb_image.h>: in the default mode a translation unit must not include stb_image itself (the private
// copy's include guard would hide its declarations, and this header stops the build if it came first).
//
// Either way retikd sniffs the format before calling stb, so only JPEG and PNG ever reach the decoder, and
// stb keeps its failure reason per thread (STBI_THREAD_LOCAL), so loader threads can decode concurrently.
#pragma once

#if defined(RETIKD_STB_IMAGE_EXTERNAL)
#include <stb/stb_image.h>
#else
#if defined(STBI_INCLUDE_STB_IMAGE_H)
#error "retikd/data: <stb/stb_image.h> was included before the retikd data headers; retikd compiles a private \
copy of stb_image in each translation unit. Include retikd first and do not use stb_image in this file, or \
define RETIKD_STB_IMAGE_EXTERNAL for the whole program and link libstb (-lstb)."
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#ifndef STBI_MAX_DIMENSIONS
#define STBI_MAX_DIMENSIONS (1 << 15)
#endif
#include <stb/stb_image.h>
#undef STB_IMAGE_IMPLEMENTATION
#endif
