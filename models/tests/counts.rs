//! The seven models against the figures of `docs/models.md` (§2, Appendix B).

use cifar_models::{build, count, MODEL_NAMES};

/// (name, params, torchinfo 1.5.2 mult-adds for N=128, conv+fc MACs per image, README GMACs)
const SPEC: [(&str, usize, u64, u64, &str); 7] = [
    ("vgg", 1_110_826, 11_279_893_760, 87_917_824, "11.28"),
    ("resnet-light", 310_474, 8_945_149_184, 69_437_952, "8.95"),
    ("resnet-heavy", 3_921_994, 16_731_415_808, 130_197_504, "16.73"),
    ("resnext-small", 1_087_114, 19_190_564_096, 148_329_472, "19.19"),
    ("resnext-large", 3_090_058, 21_234_500_864, 164_247_552, "21.23"),
    ("densenet-small", 508_447, 16_297_234_688, 126_510_210, "16.30"),
    ("densenet-large", 1_098_724, 28_754_815_232, 223_561_740, "28.75"),
];

#[test]
fn registry_lists_the_seven_in_spec_order() {
    assert_eq!(MODEL_NAMES.to_vec(), SPEC.iter().map(|s| s.0).collect::<Vec<_>>());
}

#[test]
fn exact_params_and_seed_gmacs() {
    for (name, params, torchinfo128, macs, gmacs) in SPEC {
        let graph = build(name).unwrap();
        let c = count(&graph);
        assert_eq!(c.params, params, "{name} params");
        assert_eq!(graph.param_count(), params, "{name} graph params");
        assert_eq!(c.torchinfo_macs_per_image * 128, torchinfo128, "{name} torchinfo");
        assert_eq!(format!("{:.2}", c.seed_gmacs_batch128()), gmacs, "{name} seed GMACs");
        assert_eq!(c.macs_per_image, macs, "{name} conv+fc MACs");
        // The total is the sum of the per-layer rows.
        assert_eq!(c.layers.iter().map(|l| l.macs).sum::<u64>(), macs);
        assert_eq!(graph.output_shape(), cifar_models::Shape::Flat(10));
    }
}

/// Spot checks of single layers against Appendix B of the spec.
#[test]
fn per_layer_rows_match_the_spec_listing() {
    let find = |model: &str, layer: &str| {
        let c = count(&build(model).unwrap());
        c.layers.into_iter().find(|l| l.name == layer).unwrap_or_else(|| panic!("{model}: {layer}"))
    };
    let l = find("vgg", "conv1");
    assert_eq!((l.params, l.macs), (2_432, 2_457_600));
    let l = find("vgg", "blocks.0.convf.conv");
    assert_eq!((l.params, l.macs), (18_496, 18_874_368));
    let l = find("vgg", "fc1");
    assert_eq!((l.params, l.macs), (524_416, 524_288));
    let l = find("densenet-large", "chunks.4.transition.conv.conv");
    assert_eq!((l.params, l.macs), (31_878, 127_008));
    let l = find("densenet-large", "fblock.bottles.7.conv");
    assert_eq!((l.params, l.macs), (15_296, 15_232));
    let l = find("densenet-large", "fc");
    assert_eq!((l.params, l.macs), (2_550, 2_540));
    // The grouped conv: 256 -> 256, 64 groups, 3x3 at 32x32.
    let l = find("resnext-large", "chunks.0.block1.conv2");
    assert_eq!(l.params, 256 * 4 * 9 + 256);
    assert_eq!(l.macs, 256 * 4 * 9 * 32 * 32);
}

/// Per-chunk parameter sums of the spec's §4 tables.
#[test]
fn per_part_params_match_the_spec_tables() {
    let sum = |model: &str, prefix: &str| -> usize {
        count(&build(model).unwrap()).layers.iter().filter(|l| l.name.starts_with(prefix)).map(|l| l.params).sum()
    };
    assert_eq!(sum("vgg", "blocks.0."), 27_936);
    assert_eq!(sum("vgg", "blocks.1."), 111_168);
    assert_eq!(sum("vgg", "blocks.2."), 443_520);
    assert_eq!(sum("resnet-light", "vanillachunks.0."), 97_408);
    assert_eq!(sum("resnet-light", "bottlechunks.0."), 42_368);
    assert_eq!(sum("resnet-light", "bottlechunks.1."), 165_632);
    assert_eq!(sum("resnext-large", "chunks.0."), 125_184);
    assert_eq!(sum("resnext-large", "chunks.1."), 269_824);
    assert_eq!(sum("resnext-large", "chunks.2."), 681_984);
    assert_eq!(sum("resnext-large", "chunks.3."), 1_997_824);
}

#[test]
fn structure_follows_the_code_not_the_prose() {
    use cifar_models::Op;
    let vgg = build("vgg").unwrap();
    let convs: Vec<_> = vgg.nodes.iter().filter(|n| matches!(n.op, Op::Conv(_))).collect();
    assert_eq!(convs.len(), 7, "5x5 stem + 6 3x3 convs");
    assert!(matches!(convs[0].op, Op::Conv(c) if c.kernel == 5 && c.padding == 2));
    assert!(convs.iter().all(|n| matches!(n.op, Op::Conv(c) if c.bias)));
    assert_eq!(vgg.nodes.iter().filter(|n| matches!(n.op, Op::Dropout2d { .. })).count(), 3);
    // DenseNet-large's final dense block runs at 1x1.
    let dl = build("densenet-large").unwrap();
    let fb = dl.nodes.iter().find(|n| n.name == "fblock.convs.0.conv").unwrap();
    assert_eq!(fb.shape, cifar_models::Shape::map(16, 1, 1));
    // ResNeXt chunk shortcut: a conv feeding the add directly, no BN.
    let rx = build("resnext-small").unwrap();
    let add = rx.nodes.iter().find(|n| n.name == "chunks.0.add").unwrap();
    assert_eq!(rx.nodes[add.inputs[1]].name, "chunks.0.conv");
}

#[test]
fn unknown_model_lists_valid_names() {
    let err = build("resnet").unwrap_err().to_string();
    assert!(err.contains("unknown model `resnet`") && err.contains("densenet-large"), "{err}");
}
