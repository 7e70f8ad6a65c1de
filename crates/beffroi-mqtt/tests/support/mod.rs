pub use beffroi_testkit::mosquitto;
