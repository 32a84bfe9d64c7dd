// PackedWeights: a convolution's weight matrix rearranged once, at load time, into the panels
// swiftcam's own GEMM kernel reads (Sources/CGemmKernel), so that no forward pass packs weights
// again (OpenBLAS re-packs all of them on every call: 11% of a resnet50 forward pass).

import CGemmKernel

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whether convolutions run on swiftcam's own AVX-512 GEMM kernel (else on OpenBLAS alone).
public enum GemmKernel {
    /// True when this CPU runs the kernel (x86-64 with AVX-512F and FMA, enabled by the OS).
    public static let isAvailable = swiftcam_gemm_kernel_available() != 0

    /// True when convolutions use the kernel: it is available and the environment variable
    /// `SWIFTCAM_GEMM` is not `openblas` (read once; for comparisons and as a way out).
    public static let isEnabled: Bool = {
        if let choice = getenv("SWIFTCAM_GEMM"), String(cString: choice).lowercased() == "openblas" { return false }
        return isAvailable
    }()

    /// What runs the forward products, as a C string: "swiftcam-avx512" or "openblas".
    public static var name: UnsafePointer<CChar> {
        let label: StaticString = isEnabled ? "swiftcam-avx512" : "openblas"  // NUL-terminated in the binary
        return UnsafeRawPointer(label.utf8Start).assumingMemoryBound(to: CChar.self)
    }

    /// Columns per vector of the kernel (a tile is 1 to 3 vectors wide).
    static let vectorColumns = 16

    /// Weight rows per panel and columns per tile of the kernel.
    static let panelRows = Int(SWIFTCAM_GEMM_PANEL_ROWS)
    static let tileColumns = Int(SWIFTCAM_GEMM_TILE_COLUMNS)
}

/// Each group's (rows, depth) weight matrix in panels of `GemmKernel.panelRows` rows, each stored
/// as (depth, panelRows): the weights of one step of k side by side. Rows past the end are 0. The
/// depth is cut in blocks of `PackedGemm.blockDepth` as the product consumes it, and within a block
/// the panels follow each other, so that a product reads each block of weights as one stream:
/// (groups, depth blocks, panels, block depth, panelRows).
public struct PackedWeights: Sendable {
    let storage: FloatBuffer  // (groups, depth blocks, panels, block depth, panelRows)
    /// Rows (output channels) and depth (Cin/g * kh * kw) of one group's matrix.
    let rows: Int, depth: Int
    let groups: Int

    var panels: Int { (rows + GemmKernel.panelRows - 1) / GemmKernel.panelRows }

    /// Packs a convolution's weights (Cout, Cin / groups, kh, kw), `shape.weightCount` floats, for a
    /// valid shape. Throws when the kernel is not available on this CPU or memory runs out.
    public init(weight: UnsafePointer<Float>, shape: Conv2dShape) throws(SwiftCAMError) {
        guard GemmKernel.isAvailable else {
            throw .invalidArgument("swiftcam's GEMM kernel needs an x86-64 CPU with AVX-512")
        }
        guard shape.isValid else { throw .invalidArgument("invalid convolution shape \(shape)") }
        try self.init(weight: weight, groups: shape.groups, rows: shape.outChannels / shape.groups, depth: shape.columnRows)
    }

    /// Packs `weight` (groups * rows, depth), row-major.
    init(weight: UnsafePointer<Float>, groups: Int, rows: Int, depth: Int) throws(SwiftCAMError) {
        let panelRows = GemmKernel.panelRows
        let panels = (rows + panelRows - 1) / panelRows
        storage = try FloatBuffer(count: groups * panels * depth * panelRows)
        self.rows = rows
        self.depth = depth
        self.groups = groups
        var destination = storage.pointer
        for group in 0..<groups {
            let matrix = weight + group * rows * depth  // (rows, depth)
            for blockStart in stride(from: 0, to: depth, by: PackedGemm.blockDepth) {
                let blockEnd = min(blockStart + PackedGemm.blockDepth, depth)
                for panel in 0..<panels {
                    for k in blockStart..<blockEnd {
                        for r in 0..<panelRows {
                            let row = panel * panelRows + r
                            destination[r] = row < rows ? matrix[row * depth + k] : 0
                        }
                        destination += panelRows
                    }
                }
            }
        }
    }

    /// Packs a convolution's weights (Cout, Cin / groups, kh, kw) when the kernel is enabled; nil
    /// otherwise, or when the memory is not there (the convolution then runs on OpenBLAS).
    static func packing(_ weight: UnsafePointer<Float>, shape: Conv2dShape) -> PackedWeights? {
        guard GemmKernel.isEnabled else { return nil }
        return try? PackedWeights(weight: weight, shape: shape)
    }

    /// Panel `panel` of group `group` in the depth block that starts at `blockStart` (a multiple of
    /// `PackedGemm.blockDepth`): (block depth, panelRows).
    @inline(__always)
    func panel(group: Int, _ panel: Int, depthBlockAt blockStart: Int) -> UnsafePointer<Float> {
        let panelRows = GemmKernel.panelRows
        let blockDepth = min(PackedGemm.blockDepth, depth - blockStart)
        let groupStart = group * panels * depth * panelRows
        return UnsafePointer(storage.pointer + groupStart + (blockStart * panels + panel * blockDepth) * panelRows)
    }
}
