module "topology" {
  source = "../topology"

  topology_file = var.topology_file
  prefix        = var.prefix
}
