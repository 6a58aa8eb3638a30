//! PortedDb: file format, bad rows with line/field, duplicates, reload.
mod common;

use lrn::{LrnAnswer, LrnError, LrnSource, PortedDb, PortedDbError};

#[test]
fn sample_file_loads_and_absent_numbers_are_not_ported() {
    let (db, rep) =
        PortedDb::open(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ported.txt")).unwrap();
    assert_eq!((rep.rows, rep.bad_rows, rep.duplicates), (4, 0, 0));
    assert_eq!(db.len(), 4);
    assert_eq!(
        db.get("2125550002").unwrap(),
        LrnAnswer {
            lrn: "7185550000".into(),
            ported: true
        }
    );
    assert_eq!(
        db.get("4155550100").unwrap(),
        LrnAnswer {
            lrn: "4155550100".into(),
            ported: false
        }
    );
    assert!(matches!(
        db.get("1125550100"),
        Err(LrnError::InvalidNumber(_))
    ));
}

#[test]
fn bad_rows_are_reported_with_line_and_field_and_the_rest_loads() {
    let text = "\
# header comment
2125550001;2125559999
212555000;2125559999
2125550003;21255599x9
2125550004
2125550005;2125559999;extra

  3105550006 ; 3105559999 \r
0125550007;2125559999
2125550001;7185550000
";
    let (db, rep) = PortedDb::from_reader(text.as_bytes()).unwrap();
    let got: Vec<(usize, usize)> = rep.errors.iter().map(|e| (e.line, e.field)).collect();
    assert_eq!(got, vec![(3, 1), (4, 2), (5, 0), (6, 0), (9, 1)]);
    assert_eq!(rep.bad_rows, 5);
    assert!(
        rep.errors[1].to_string().starts_with("line 4, field 2:"),
        "{}",
        rep.errors[1]
    );
    assert_eq!(rep.duplicates, 1);
    assert_eq!(rep.rows, 2);
    // The later duplicate wins; whitespace-padded row loaded.
    assert_eq!(db.get("2125550001").unwrap().lrn, "7185550000");
    assert_eq!(db.get("3105550006").unwrap().lrn, "3105559999");
}

#[test]
fn error_list_is_capped_but_all_bad_rows_are_counted() {
    let text: String =
        (0..1500).map(|i| format!("bad{i}\n")).collect::<String>() + "2125550001;2125559999\n";
    let (db, rep) = PortedDb::from_reader(text.as_bytes()).unwrap();
    assert_eq!(rep.bad_rows, 1500);
    assert_eq!(rep.errors.len(), lrn::source::MAX_REPORTED_ROW_ERRORS);
    assert_eq!(db.len(), 1);
}

#[test]
fn reload_swaps_contents_and_io_errors_keep_the_old_table() {
    let path = common::temp_path("ported");
    std::fs::write(&path, "2125550001;2125559999\n").unwrap();
    let (db, _) = PortedDb::open(&path).unwrap();
    assert!(db.get("2125550001").unwrap().ported);
    std::fs::write(&path, "2125550002;2125559999\n2125550003;2125559999\n").unwrap();
    let rep = db.reload(&path).unwrap();
    assert_eq!(rep.rows, 2);
    assert!(!db.get("2125550001").unwrap().ported);
    assert!(db.get("2125550003").unwrap().ported);
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(db.reload(&path), Err(PortedDbError::Io { .. })));
    assert_eq!(db.len(), 2, "old contents kept");
}

#[tokio::test]
async fn is_an_lrn_source() {
    let (db, _) = PortedDb::from_reader(&b"2125550001;2125559999\n"[..]).unwrap();
    assert_eq!(db.lookup("2125550001").await.unwrap().lrn, "2125559999");
    assert!(PortedDb::empty().is_empty());
    assert_eq!(
        PortedDb::empty().lookup("2125550001").await.unwrap().lrn,
        "2125550001"
    );
}
