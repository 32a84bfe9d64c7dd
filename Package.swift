// swift-tools-version: 6.0
// swiftcam: a Grad-CAM engine for ResNets. The Swift core (SwiftCAM) sits on OpenBLAS and, on
// CPUs with AVX-512, on CGemmKernel, its own matrix-product micro-kernel (C, for the intrinsics);
// SwiftCAMExports exposes it through the C ABI declared in Sources/CSwiftCAM/include/swiftcam.h
// and is built as the dynamic library libswiftcam.so that the Python extension links against.
import PackageDescription

let optimize: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"])]

let package = Package(
    name: "swiftcam",
    products: [
        .library(name: "swiftcam", type: .dynamic, targets: ["SwiftCAMExports"]),
    ],
    targets: [
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .target(name: "CSwiftCAM"),
        // The AVX-512 GEMM micro-kernel (intrinsics need C); the rest of the engine is Swift.
        .target(name: "CGemmKernel", cSettings: [.unsafeFlags(["-O3"])]),
        .target(
            name: "SwiftCAM",
            dependencies: ["COpenBLAS", "CGemmKernel"],
            swiftSettings: optimize
        ),
        .target(
            name: "SwiftCAMExports",
            dependencies: ["SwiftCAM", "CSwiftCAM"],
            swiftSettings: optimize
        ),
        .testTarget(
            name: "SwiftCAMTests",
            dependencies: ["SwiftCAM", "SwiftCAMExports", "CSwiftCAM"]
        ),
    ]
)
