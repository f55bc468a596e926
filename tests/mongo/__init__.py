"""MongoStore tests against MongoDB- and S3-protocol servers on loopback."""
