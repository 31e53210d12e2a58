// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {InfHub} from "../../src/InfHub.sol";
import {InfHubSettlement} from "../../src/InfHubSettlement.sol";
import {PointRegistry} from "../../src/PointRegistry.sol";

/// Deploys a hub the way every deployment does: its settlement module first (on the chain's
/// point registry), then the hub contract given that module.
function deployHub(IERC20 token, address hub, uint64 challengePeriodBlocks, uint64 reserveNoticeBlocks, PointRegistry registry)
    returns (InfHub)
{
    InfHubSettlement settlement =
        new InfHubSettlement(token, hub, challengePeriodBlocks, reserveNoticeBlocks, registry);
    return new InfHub(token, hub, challengePeriodBlocks, reserveNoticeBlocks, settlement);
}
