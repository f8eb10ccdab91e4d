import { Module } from '@nestjs/common';
import { MongooseModule } from '@nestjs/mongoose';
import { NATIVE_CONTROL, NativeControlSchema } from './controls/native-control.model.js';
import { NativeControlsController } from './controls/native-controls.controller.js';
import { NativeControls } from './controls/native-controls.service.js';
import { RegistryBridge } from './registry-bridge.service.js';
import { RegistryController } from './registry.controller.js';

@Module({
  imports: [MongooseModule.forFeature([{ name: NATIVE_CONTROL, schema: NativeControlSchema }])],
  controllers: [RegistryController, NativeControlsController],
  providers: [RegistryBridge, NativeControls],
  exports: [RegistryBridge],
})
export class RegistryBridgeModule {}
