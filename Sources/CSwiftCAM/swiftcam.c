/* CSwiftCAM is a header-only target: it makes include/swiftcam.h visible to Swift, so the
   exported functions in SwiftCAMExports are checked against the declarations. */
#include "swiftcam.h"
